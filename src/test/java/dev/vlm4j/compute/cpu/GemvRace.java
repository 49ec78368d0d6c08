package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;

/**
 * Manual probe: matrix-vector GB/s on a DRAM-sized matrix (rows given by -Dout, 2048 wide) with all workers, the
 * kernels interleaved in rounds with the read bandwidth, best and median of each (robust to other load).
 */
public final class GemvRace {
    public static void main(String[] a) {
        int out = Integer.getInteger("out", 151936), in = 2048, rounds = a.length > 1 ? Integer.parseInt(a[1]) : 8;
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        Tensor bf = CpuKernelsTest.bf16(v, out, in), q8 = Quant.quantize(Tensor.of(v, out, in), DType.Q8_0);
        MemorySegment il = java.lang.foreign.Arena.ofAuto().allocate(out * 34L * (in / 32), 64);
        {
            MemorySegment qm = q8.data();
            long so = Quant.scalesOffset(DType.Q8_0, q8.shape());
            int nb = in / 32;
            for (int j = 0; j < out; j++) {
                MemorySegment.copy(qm, (long) j * nb * 32, il, j * 34L * nb, nb * 32L);
                MemorySegment.copy(qm, so + 2L * j * nb, il, j * 34L * nb + nb * 32L, 2L * nb);
            }
        }
        MemorySegment bm = java.lang.foreign.Arena.ofAuto().allocate(2L * out * in + 64, 64).asSlice(Integer.getInteger("mis", 0), 2L * out * in);
        MemorySegment.copy(bf.data(), 0, bm, 0, bm.byteSize());
        Tensor bfn = new Tensor(DType.BF16, bf.shape(), bm, dev.vlm4j.tensor.Device.CPU);
        v = null;
        float[] y = new float[out];
        float[] x = CpuKernelsTest.randn(in, 2, 1f);
        String[] names = (a.length > 0 ? a[0] : "bw,q8old,q8,bf16").split(",");
        double[][] gbs = new double[names.length][rounds];
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < names.length; i++) {
                long t0 = System.nanoTime();
                long bytes = switch (names[i]) {
                    case "bw" -> { double b = MachineLimits.readBandwidth(1L << 30, 1); gbs[i][r] = b / 1e9; yield -1; }
                    case "q8old" -> { q8old(x, in, q8, out); yield Quant.bytesOf(q8); }
                    case "q8v" -> { Gemv.nativeQ8 = false; MatMul.linear(x, 1, in, q8, null); Gemv.nativeQ8 = true; yield Quant.bytesOf(q8); }
                    case "q8f" -> { Gemv.vnniQ8 = false; MatMul.linear(x, 1, in, q8, null); Gemv.vnniQ8 = true; yield Quant.bytesOf(q8); }
                    case "q8" -> { MatMul.linear(x, 1, in, q8, null); yield Quant.bytesOf(q8); }
                    case "bf16v" -> { GemvBf16.nativeRows = false; MatMul.linear(x, 1, in, bfn, null); GemvBf16.nativeRows = NativeKernels.bf16Available(); yield Quant.bytesOf(bf); }
                    case "bf16" -> { MatMul.linear(x, 1, in, bfn, null); yield Quant.bytesOf(bf); }
                    case "bf16old" -> { bf16old(x, in, bm, out, y); yield Quant.bytesOf(bf); }
                    case "q8il" -> { GemvLab.q8il(x, il, in / 32, out, y, 0); yield Quant.bytesOf(q8); }
                    case "q8ilt" -> { GemvLab.q8il(x, il, in / 32, out, y, Integer.getInteger("dist", 2048)); yield Quant.bytesOf(q8); }
                    case "bfo" -> { GemvLab.bf16(x, bm, in, out, y, 0); yield Quant.bytesOf(bf); }
                    case "bft" -> { GemvLab.bf16(x, bm, in, out, y, Integer.getInteger("dist", 2048)); yield Quant.bytesOf(bf); }
                    case "sf" -> { GemvLab.stream(q8.data(), false); yield Quant.bytesOf(q8); }
                    case "sb" -> { GemvLab.stream(q8.data(), true); yield Quant.bytesOf(q8); }
                    case "sbt" -> { GemvLab.stream(q8.data(), true, Integer.getInteger("dist", 1024)); yield Quant.bytesOf(q8); }
                    case "sbt2" -> { GemvLab.stream(q8.data(), true, 4 * Integer.getInteger("dist", 1024)); yield Quant.bytesOf(q8); }
                    case "sbw" -> { GemvLab.streamWide(q8.data()); yield Quant.bytesOf(q8); }
                    case "sbwt" -> { GemvLab.streamWide(q8.data(), Integer.getInteger("dist", 1024)); yield Quant.bytesOf(q8); }
                    case "sbw2" -> { GemvLab.streamWide2(q8.data()); yield Quant.bytesOf(q8); }
                    default -> throw new IllegalArgumentException(names[i]);
                };
                if (bytes > 0) gbs[i][r] = bytes / ((System.nanoTime() - t0) / 1e9) / 1e9;
            }
        for (int i = 0; i < names.length; i++) {
            double[] s = gbs[i].clone();
            java.util.Arrays.sort(s);
            System.out.printf("%-6s best %.1f GB/s median %.1f GB/s%n", names[i], s[s.length - 1], s[s.length / 2]);
        }
    }

    /** The row-at-a-time bf16 kernel (before the paired one), for comparison. */
    static void bf16old(float[] x, int in, MemorySegment w, int out, float[] y) {
        Parallel.forRange(out, 16, (j0, j1) -> {
            for (int j = j0; j < j1; j++) y[j] = Gemv.dotBf16(x, 0, w, 2L * j * in, in);
        });
    }

    /** The row-at-a-time Q8_0 kernel (before the grouped one), for comparison. */
    static float[] q8old(float[] x, int in, Tensor w, int out) {
        int nb = Quant.blocksPerRow(in);
        float[] y = new float[out];
        MemorySegment m = w.data();
        long so = Quant.scalesOffset(w.dtype(), w.shape());
        Parallel.forRange(out, 16, (j0, j1) -> {
            for (int j = j0; j < j1; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        });
        return y;
    }
}
