package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/** Manual probe: GEMM and attention GFLOP/s next to the measured FMA peak, in one process (ratios). */
public final class GemmProbe {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]), in = Integer.parseInt(a[1]), out = Integer.parseInt(a[2]);
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        Tensor bf = CpuKernelsTest.bf16(v, out, in), q8 = Quant.quantize(Tensor.of(v, out, in), DType.Q8_0), f32 = Tensor.of(v, out, in);
        float[] x = CpuKernelsTest.randn(n * in, 2, 1f);
        for (int rep = 0; rep < 3; rep++) {
            double peak = MachineLimits.peakFlops(20_000_000, 1);
            for (Tensor w : new Tensor[]{f32, bf, q8}) {
                long t0 = System.nanoTime();
                MatMul.linear(x, n, in, w, null);
                double s = (System.nanoTime() - t0) / 1e9, fl = 2.0 * n * in * out;
                System.out.printf("%s n=%d %dx%d: %.1f GFLOP/s, peak %.1f -> %.2f%n", w.dtype(), n, in, out, fl / s / 1e9, peak / 1e9, fl / s / peak);
            }
            int d = 128, hq = 16, hkv = 2;
            float[] q = CpuKernelsTest.randn(n * hq * d, 3, 1f), k = CpuKernelsTest.randn(n * hkv * d, 4, 1f);
            long t0 = System.nanoTime();
            Attention.compute(q, n, k, k, n, hq, hkv, d, AttentionMask.causal(0));
            double s = (System.nanoTime() - t0) / 1e9, fl = 4.0 * hq * d * n * (n + 1) / 2.0;
            System.out.printf("attention causal n=%d: %.1f GFLOP/s -> %.2f%n", n, fl / s / 1e9, fl / s / peak);
        }
    }
}
