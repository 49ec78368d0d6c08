package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import org.openjdk.jmh.annotations.*;

import java.util.concurrent.TimeUnit;

/**
 * JMH microbenchmarks of the CPU kernels (run with scripts/jmh.sh). Shapes are the Qwen2.5-VL-3B decoder's MLP
 * (2048 -> 11008) and the ViT MLP's odd width 3420. Not run by the unit tests.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 2)
@Measurement(iterations = 5, time = 2)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class KernelBench {
    @Param({"BF16", "Q8_0", "Q4_0"})
    public String dtype;

    @Param({"1", "128"})
    public int rows;

    @Param({"2048x11008", "3420x1280"})
    public String shape;

    Tensor w;
    float[] x;
    int in;

    @Setup
    public void setup() {
        String[] s = shape.split("x");
        in = Integer.parseInt(s[0]);
        int out = Integer.parseInt(s[1]);
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        w = dtype.equals("BF16") ? CpuKernelsTest.bf16(v, out, in) : Quant.quantize(Tensor.of(v, out, in), DType.valueOf(dtype));
        x = CpuKernelsTest.randn(rows * in, 2, 1f);
    }

    /** y = x W^T: matrix-vector (rows = 1, decode) or packed GEMM (rows = 128, prefill). */
    @Benchmark
    public float[] linear() { return MatMul.linear(x, rows, in, w, null); }
}
