package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code y[i, j] = sum_k x[i, k] * w[j, k] (+ b[j])} with float32 activations and f32, bf16, Q8_0 or Q4_0 weights:
 * few rows (decode) go to the matrix-vector kernels of {@link Gemv} (bandwidth bound, each weight row streamed
 * once), many rows (prefill, vision) to the packed GEMM of {@link Gemm}. Also the weight-row conversions both use.
 */
final class MatMul {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    private static final int L = F.length();
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(Math.max(64, L * 16)));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, L * 8)));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    /**
     * From this many activation rows on, the packed GEMM is used; below, a GEMV that reads each weight row once per
     * call. bf16 weights have register-blocked GEMV kernels ({@link GemvBf16}, the same sums whatever the number of
     * rows, so batched and single decoding agree exactly) that beat the GEMM's packing up to about 64 rows; f32 and
     * quantized weights switch at 16. {@code -Dvlm4j.gemmMinRows=N} sets both.
     */
    static final int GEMM_MIN_ROWS = Integer.getInteger("vlm4j.gemmMinRows", 16),
            GEMM_MIN_ROWS_BF16 = Integer.getInteger("vlm4j.gemmMinRows", 64);
    private static final int BLK = Quant.BLOCK;

    private MatMul() {}

    /** Whether {@link #linear} runs {@code n} rows against {@code w} through the packed GEMM. */
    static boolean usesGemm(int n, Tensor w) {
        DType dt = w.dtype();
        return w.rank() == 2 && (dt == DType.F32 || dt == DType.BF16 || dt == DType.Q8_0 || dt == DType.Q4_0)
                && n >= (dt == DType.BF16 ? GEMM_MIN_ROWS_BF16 : GEMM_MIN_ROWS);
    }

    static float[] linear(float[] x, int n, int in, Tensor w, float[] bias) {
        return linear(x, n, in, w, bias, null);
    }

    /** As {@link #linear(float[], int, int, Tensor, float[])}, into {@code into} when it holds n * out values. */
    static float[] linear(float[] x, int n, int in, Tensor w, float[] bias, float[] into) {
        int out = (int) w.dim(0);
        float[] y = into != null && into.length >= n * out ? into : new float[n * out]; // every kernel assigns all of y
        DType dt = w.dtype();
        if (n >= (dt == DType.BF16 ? GEMM_MIN_ROWS_BF16 : GEMM_MIN_ROWS)) Gemm.gemm(x, n, in, w, out, y);
        else if (dt.isQuantized()) Gemv.quant(x, n, in, w, out, y);
        else if (dt == DType.BF16) GemvBf16.linear(x, n, in, w.data(), out, y);
        else Gemv.floats(x, n, in, w.data(), dt, out, y);
        if (bias != null)
            for (int i = 0; i < n; i++) for (int j = 0; j < out; j++) y[i * out + j] += bias[j];
        return y;
    }

    static FloatVector bf16(MemorySegment w, long byteOff) {
        ShortVector s = ShortVector.fromMemorySegment(S, w, byteOff, LE);
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    static float bf16At(MemorySegment w, long byteOff) {
        return Float.intBitsToFloat((w.get(I16, byteOff) & 0xffff) << 16);
    }

    /** row[0, kc) = w[j, k0 .. k0 + kc) as float32 (k0 is a multiple of the quant block). */
    static void rowSlice(Tensor w, int in, int j, int k0, int kc, float[] row) {
        MemorySegment m = w.data();
        switch (w.dtype()) {
            case F32 -> MemorySegment.copy(m, F32, 4L * ((long) j * in + k0), row, 0, kc);
            case BF16 -> {
                long base = 2L * ((long) j * in + k0);
                int k = 0;
                for (; k <= kc - L; k += L) bf16(m, base + 2L * k).intoArray(row, k);
                for (; k < kc; k++) row[k] = bf16At(m, base + 2L * k);
            }
            case Q8_0, Q4_0 -> quantRowSlice(m, w.dtype() == DType.Q8_0, Quant.blocksPerRow(in), Quant.blockBytes(w.dtype()),
                    Quant.scalesOffset(w.dtype(), w.shape()), j, k0, kc, row);
            default -> { for (int k = 0; k < kc; k++) row[k] = w.getFloat((long) j * in + k0 + k); }
        }
    }

    /** row[0, kc) = dequantized w[j, k0 .. k0 + kc) of a Q8_0 / Q4_0 matrix (nb blocks of qb bytes per row, scales at so). */
    static void quantRowSlice(MemorySegment m, boolean q8, int nb, int qb, long so, int j, int k0, int kc, float[] row) {
        for (int b = k0 / BLK, o = 0; o < kc; b++, o += BLK) {
            long blk = (long) j * nb + b;
            FloatVector d = FloatVector.broadcast(F, Float.float16ToFloat(m.get(I16, so + 2 * blk)));
            if (q8) {
                for (int s = 0; s < BLK; s += L)
                    ((FloatVector) ByteVector.fromMemorySegment(B, m, blk * qb + s, LE).convertShape(VectorOperators.B2F, F, 0))
                            .mul(d).intoArray(row, o + s);
            } else {
                for (int s = 0; s < BLK / 2; s += L) {
                    ByteVector raw = ByteVector.fromMemorySegment(B, m, blk * qb + s, LE);
                    ((FloatVector) raw.and((byte) 15).sub((byte) 8).convertShape(VectorOperators.B2F, F, 0)).mul(d).intoArray(row, o + s);
                    ((FloatVector) raw.lanewise(VectorOperators.LSHR, 4).sub((byte) 8).convertShape(VectorOperators.B2F, F, 0))
                            .mul(d).intoArray(row, o + 16 + s);
                }
            }
        }
    }
}
