package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.Tensor;

/** Manual probe: the packed GEMM with and without row chunks against panel groups, alternating, best GFLOP/s (args: n in out rounds). */
public final class GemmOrderRace {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]), in = Integer.parseInt(a[1]), out = Integer.parseInt(a[2]), rounds = Integer.parseInt(a[3]);
        Tensor bf = CpuKernelsTest.weight("BF16N", CpuKernelsTest.randn(out * in, 1, 0.02f), out, in);
        float[] x = CpuKernelsTest.randn(n * in, 2, 1f), y = new float[n * out];
        double fl = 2.0 * n * in * out, peak = 0;
        long[] modes = {Long.MAX_VALUE, 0};
        double[] best = new double[2];
        for (int r = 0; r < rounds; r++) {
            peak = Math.max(peak, MachineLimits.peakFlops(20_000_000, 1));
            for (int i = 0; i < 2; i++) {
                long t0 = System.nanoTime();
                Gemm.gemm(x, n, in, bf, out, y, Gemm.NATIVE, modes[i]);
                best[i] = Math.max(best[i], fl / ((System.nanoTime() - t0) / 1e9));
            }
        }
        System.out.printf("n=%d %dx%d peak %.1f: whole rows %.1f (%.2f)  chunked %.1f (%.2f)%n", n, in, out, peak / 1e9,
                best[0] / 1e9, best[0] / peak, best[1] / 1e9, best[1] / peak);
    }
}
