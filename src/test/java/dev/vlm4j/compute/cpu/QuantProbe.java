package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/** Manual probe: quantization throughput (elements/s). */
public final class QuantProbe {
    public static void main(String[] a) {
        Tensor bf = CpuKernelsTest.bf16(CpuKernelsTest.randn(11008 * 2048, 1, 0.02f), 11008, 2048);
        for (int r = 0; r < 4; r++) {
            long t0 = System.nanoTime();
            Quant.quantize(bf, DType.Q8_0, VectorOps::quantizeQ8);
            double s = (System.nanoTime() - t0) / 1e9;
            System.out.printf("q8_0: %.1f ns/element%n", s * 1e9 / bf.numel());
        }
    }
}
