package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.Tensor;

/**
 * Manual probe: several matrices against the same activations, one GEMM per matrix against {@link Gemm#gemmMany},
 * alternating in one process, the time of each round (args: n in rounds out1 out2 ...; weights Q8_0).
 * The 3B prefill's q/k/v: {@code 1024 2048 8 2048 256 256}; gate/up: {@code 1024 2048 6 11008 11008}.
 */
public final class GemmManyRace {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]), in = Integer.parseInt(a[1]), rounds = Integer.parseInt(a[2]), k = a.length - 3;
        int[] outs = new int[k];
        Tensor[] ws = new Tensor[k];
        float[][] ys = new float[k][];
        double flops = 0;
        for (int m = 0; m < k; m++) {
            outs[m] = Integer.parseInt(a[3 + m]);
            ws[m] = CpuKernelsTest.weight("Q8_0", CpuKernelsTest.randn(outs[m] * in, 1 + m, 0.02f), outs[m], in);
            ys[m] = new float[n * outs[m]];
            flops += 2.0 * n * in * outs[m];
        }
        float[] x = CpuKernelsTest.randn(n * in, 9, 1f);
        double[] sum = new double[2];
        int wins = 0;
        for (int r = 0; r < rounds; r++) {
            long t0 = System.nanoTime();
            for (int m = 0; m < k; m++) Gemm.gemm(x, n, in, ws[m], outs[m], ys[m]);
            long t1 = System.nanoTime();
            Gemm.gemmMany(x, n, in, ws, outs, ys);
            long t2 = System.nanoTime();
            double one = (t1 - t0) / 1e6, many = (t2 - t1) / 1e6;
            if (r > 0) { sum[0] += one; sum[1] += many; if (many < one) wins++; }
            System.out.printf("round %d: one GEMM per matrix %.1f ms (%.1f GFLOP/s), together %.1f ms (%.1f GFLOP/s)%n", r, one,
                    flops / one / 1e6, many, flops / many / 1e6);
        }
        System.out.printf("rounds 1..%d: one per matrix %.1f ms, together %.1f ms on average; together faster in %d of %d%n",
                rounds - 1, sum[0] / (rounds - 1), sum[1] / (rounds - 1), wins, rounds - 1);
    }
}
