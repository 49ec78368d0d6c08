package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/** Manual probe: old and new packed GEMM interleaved with the FMA peak, best GFLOP/s of each (args: n in out rounds). */
public final class GemmRace {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]), in = Integer.parseInt(a[1]), out = Integer.parseInt(a[2]), rounds = Integer.parseInt(a[3]);
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        Tensor bf = CpuKernelsTest.weight("BF16N", v, out, in), q8 = Quant.quantize(Tensor.of(v, out, in), DType.Q8_0);
        v = null;
        float[] x = CpuKernelsTest.randn(n * in, 2, 1f);
        double fl = 2.0 * n * in * out, peak = 0;
        String[] names = {"bf16-old", "bf16-new", "q8-old", "q8-new"};
        double[] best = new double[names.length];
        for (int r = 0; r < rounds; r++) {
            peak = Math.max(peak, MachineLimits.peakFlops(20_000_000, 1));
            for (int i = 0; i < names.length; i++) {
                Tensor w = i < 2 ? bf : q8;
                long t0 = System.nanoTime();
                if (i % 2 == 0) GemmOld.linear(x, n, in, w);
                else MatMul.linear(x, n, in, w, null);
                best[i] = Math.max(best[i], fl / ((System.nanoTime() - t0) / 1e9));
            }
        }
        StringBuilder sb = new StringBuilder(String.format("n=%d %dx%d peak %.1f GFLOP/s:", n, in, out, peak / 1e9));
        for (int i = 0; i < names.length; i++) sb.append(String.format("  %s %.1f (%.2f)", names[i], best[i] / 1e9, best[i] / peak));
        System.out.println(sb);
    }
}
