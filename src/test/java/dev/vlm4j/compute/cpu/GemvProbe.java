package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/** Manual probe: matrix-vector GB/s of each dtype on an lm_head-sized matrix, next to the read bandwidth. */
public final class GemvProbe {
    public static void main(String[] a) {
        int out = Integer.parseInt(a[0]), in = 2048;
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        Tensor bf = CpuKernelsTest.bf16(v, out, in), q8 = Quant.quantize(Tensor.of(v, out, in), DType.Q8_0);
        Tensor q4 = Quant.quantize(Tensor.of(v, out, in), DType.Q4_0);
        v = null;
        float[] x = CpuKernelsTest.randn(in, 2, 1f);
        for (int rep = 0; rep < 4; rep++) {
            double bw = MachineLimits.readBandwidth(1L << 30, 3);
            StringBuilder sb = new StringBuilder(String.format("bw %.1f GB/s:", bw / 1e9));
            for (Tensor w : new Tensor[]{bf, q8, q4}) {
                double best = 1e9;
                for (int i = 0; i < 5; i++) {
                    long t0 = System.nanoTime();
                    MatMul.linear(x, 1, in, w, null);
                    best = Math.min(best, (System.nanoTime() - t0) / 1e9);
                }
                sb.append(String.format("  %s %.1f GB/s (%.2f)", w.dtype(), Quant.bytesOf(w) / best / 1e9, Quant.bytesOf(w) / best / bw));
            }
            System.out.println(sb);
        }
    }
}
