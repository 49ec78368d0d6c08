package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import jdk.incubator.vector.*;

import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/**
 * {@code y[i, j] = sum_k x[i, k] * w[j, k] (+ b[j])} with float32 activations and float32 or bf16 weights read
 * straight from (memory-mapped) segments. Work is split over output columns so each weight row is streamed once
 * per block of activation rows.
 */
final class MatMul {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(F.vectorBitSize() / 2));
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_PREFERRED;
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    /** Activation rows handled together against one weight row (register/cache reuse). */
    private static final int ROW_BLOCK = 4;

    private MatMul() {}

    static float[] linear(float[] x, int n, int in, MemorySegment w, DType wt, int out, float[] bias) {
        float[] y = new float[n * out];
        int minChunk = Math.max(1, 65536 / Math.max(1, in * Math.max(1, n)));
        Parallel.forRange(out, Math.max(4, minChunk), (j0, j1) -> {
            for (int i0 = 0; i0 < n; i0 += ROW_BLOCK) {
                int rows = Math.min(ROW_BLOCK, n - i0);
                for (int j = j0; j < j1; j++) {
                    long wOff = (long) j * in * wt.bytes;
                    float b = bias == null ? 0f : bias[j];
                    if (rows == ROW_BLOCK && wt == DType.BF16) {
                        dot4Bf16(x, i0, in, w, wOff, y, out, j, b);
                    } else {
                        for (int r = 0; r < rows; r++) {
                            int xOff = (i0 + r) * in;
                            float d = switch (wt) {
                                case BF16 -> dotBf16(x, xOff, w, wOff, in);
                                case F32 -> dotF32(x, xOff, w, wOff, in);
                                default -> throw new IllegalArgumentException("weights of dtype " + wt + " are not supported by the CPU matmul");
                            };
                            y[(i0 + r) * out + j] = d + b;
                        }
                    }
                }
            }
        });
        return y;
    }

    private static FloatVector bf16(MemorySegment w, long byteOff) {
        ShortVector s = ShortVector.fromMemorySegment(S, w, byteOff, LE);
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    static float dotBf16(float[] x, int xOff, MemorySegment w, long wOff, int in) {
        FloatVector acc = FloatVector.zero(F);
        int L = F.length(), k = 0;
        for (; k <= in - L; k += L)
            acc = FloatVector.fromArray(F, x, xOff + k).fma(bf16(w, wOff + 2L * k), acc);
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++)
            s += x[xOff + k] * Float.intBitsToFloat((w.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, wOff + 2L * k) & 0xffff) << 16);
        return s;
    }

    private static void dot4Bf16(float[] x, int i0, int in, MemorySegment w, long wOff, float[] y, int out, int j, float b) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int L = F.length(), k = 0;
        int x0 = i0 * in, x1 = x0 + in, x2 = x1 + in, x3 = x2 + in;
        for (; k <= in - L; k += L) {
            FloatVector wv = bf16(w, wOff + 2L * k);
            a0 = FloatVector.fromArray(F, x, x0 + k).fma(wv, a0);
            a1 = FloatVector.fromArray(F, x, x1 + k).fma(wv, a1);
            a2 = FloatVector.fromArray(F, x, x2 + k).fma(wv, a2);
            a3 = FloatVector.fromArray(F, x, x3 + k).fma(wv, a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            float wk = Float.intBitsToFloat((w.get(java.lang.foreign.ValueLayout.JAVA_SHORT_UNALIGNED, wOff + 2L * k) & 0xffff) << 16);
            s0 += x[x0 + k] * wk; s1 += x[x1 + k] * wk; s2 += x[x2 + k] * wk; s3 += x[x3 + k] * wk;
        }
        y[i0 * out + j] = s0 + b;
        y[(i0 + 1) * out + j] = s1 + b;
        y[(i0 + 2) * out + j] = s2 + b;
        y[(i0 + 3) * out + j] = s3 + b;
    }

    static float dotF32(float[] x, int xOff, MemorySegment w, long wOff, int in) {
        FloatVector acc = FloatVector.zero(F);
        int L = F.length(), k = 0;
        for (; k <= in - L; k += L)
            acc = FloatVector.fromArray(F, x, xOff + k).fma(FloatVector.fromMemorySegment(F, w, wOff + 4L * k, LE), acc);
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++)
            s += x[xOff + k] * w.get(java.lang.foreign.ValueLayout.JAVA_FLOAT_UNALIGNED, wOff + 4L * k);
        return s;
    }
}
