package dev.vlm4j.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.stream.IntStream;

/**
 * Block quantization of 2-D weights {@code [rows, cols]} (higher ranks are viewed as {@code [dim0, rest]}), in the
 * spirit of GGML's Q8_0 / Q4_0: each row is cut into blocks of {@value #BLOCK} values (the last block of a row whose
 * length is not a multiple of 32 is zero-padded), and each block keeps an f16 scale {@code d}.
 * <ul>
 *   <li>Q8_0: {@code d = max|x| / 127}, {@code q = round(x / d)} (half away from zero) in [-127, 127]; value {@code q * d}.</li>
 *   <li>Q4_0: {@code d = m / -8} where m is the block value of largest magnitude (sign kept),
 *       {@code q = min(15, (int) (x / d + 8.5))}; value {@code (q - 8) * d}. Byte i of a block holds
 *       {@code q[i]} in its low nibble and {@code q[i + 16]} in its high nibble.</li>
 * </ul>
 * Memory layout of one tensor (one segment): all quant blocks, row-major ({@code rows * blocksPerRow * qBytes}),
 * then all f16 scales ({@code rows * blocksPerRow * 2} bytes), so the kernels stream both regions linearly.
 */
public final class Quant {
    public static final int BLOCK = 32;
    static final ValueLayout.OfShort F16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private Quant() {}

    public static long rows(long[] shape) { return shape.length == 0 ? 1 : shape[0]; }

    public static long cols(long[] shape) {
        long c = 1;
        for (int i = 1; i < shape.length; i++) c *= shape[i];
        return c;
    }

    public static int blocksPerRow(long cols) { return (int) ((cols + BLOCK - 1) / BLOCK); }

    /** Bytes of quant values per block: 32 for Q8_0, 16 for Q4_0. */
    public static int blockBytes(DType t) {
        return switch (t) {
            case Q8_0 -> BLOCK;
            case Q4_0 -> BLOCK / 2;
            default -> throw new IllegalArgumentException(t + " is not a quantized dtype");
        };
    }

    /** Byte offset of the scales region. */
    public static long scalesOffset(DType t, long[] shape) {
        return rows(shape) * blocksPerRow(cols(shape)) * blockBytes(t);
    }

    public static long storageBytes(DType t, long[] shape) {
        return scalesOffset(t, shape) + rows(shape) * blocksPerRow(cols(shape)) * 2L;
    }

    /** Element i (flat index) of a quantized tensor, dequantized. */
    static float get(Tensor t, long i) {
        long[] sh = t.shape();
        long cols = cols(sh), r = i / cols, c = i % cols;
        int nb = blocksPerRow(cols);
        long blk = r * nb + c / BLOCK;
        int inBlk = (int) (c % BLOCK);
        MemorySegment m = t.data();
        float d = Float.float16ToFloat(m.get(F16, scalesOffset(t.dtype(), sh) + 2 * blk));
        if (t.dtype() == DType.Q8_0) return m.get(ValueLayout.JAVA_BYTE, blk * BLOCK + inBlk) * d;
        int b = m.get(ValueLayout.JAVA_BYTE, blk * (BLOCK / 2) + (inBlk & 15)) & 0xff;
        int q = inBlk < 16 ? b & 15 : b >>> 4;
        return (q - 8) * d;
    }

    /**
     * Quantizes a float tensor (any float dtype) into a new off-heap tensor of type {@code target}, row-parallel.
     * When the source is memory-mapped its pages are released afterwards (madvise), so resident memory holds only
     * the quantized copy.
     */
    public static Tensor quantize(Tensor w, DType target) {
        return quantize(w, target, null);
    }

    /** A faster quantizer of whole rows (a backend's vector code); it must produce exactly the scalar result. */
    public interface RowQuantizer {
        /** Quantizes row (nb * 32 floats, zero padded) into q (nb * 32 bytes) and scales (nb f16). */
        void q8(float[] row, int nb, byte[] q, short[] scales);
    }

    /** As {@link #quantize(Tensor, DType)}, with Q8_0 rows quantized by {@code fast} when given. */
    public static Tensor quantize(Tensor w, DType target, RowQuantizer fast) {
        long[] sh = w.shape();
        long rowsL = rows(sh), cols = cols(sh);
        int nb = blocksPerRow(cols), qb = blockBytes(target);
        MemorySegment out = NativeMemory.allocate(storageBytes(target, sh));
        long so = scalesOffset(target, sh);
        int rows = Math.toIntExact(rowsL);
        IntStream.range(0, (rows + 63) / 64).parallel().forEach(chunk -> {
            float[] row = new float[nb * BLOCK];
            short[] raw = new short[(int) cols], scales = new short[nb];
            byte[] q = new byte[nb * qb];
            for (int r = chunk * 64; r < Math.min(rows, chunk * 64 + 64); r++) {
                readRow(w, r, (int) cols, row, raw);
                if (fast != null && target == DType.Q8_0) fast.q8(row, nb, q, scales);
                else for (int b = 0; b < nb; b++)
                    scales[b] = target == DType.Q8_0 ? quantQ8(row, b * BLOCK, q, b * qb) : quantQ4(row, b * BLOCK, q, b * qb);
                MemorySegment.copy(q, 0, out, ValueLayout.JAVA_BYTE, (long) r * nb * qb, q.length);
                MemorySegment.copy(scales, 0, out, F16, so + 2L * r * nb, nb);
            }
        });
        if (w.data().isMapped()) {
            try { w.data().unload(); } catch (RuntimeException ignored) { /* best effort */ }
        }
        return new Tensor(target, sh, out, w.device());
    }

    /** Row r of a float tensor as float32 into dst (zero padding after cols). */
    private static void readRow(Tensor w, int r, int cols, float[] dst, short[] raw) {
        long base = (long) r * cols;
        MemorySegment m = w.data();
        switch (w.dtype()) {
            case BF16 -> { // one bulk copy, then a plain loop (per-element segment reads do not always inline)
                MemorySegment.copy(m, Tensor.I16_LE, 2 * base, raw, 0, cols);
                for (int c = 0; c < cols; c++) dst[c] = Float.intBitsToFloat((raw[c] & 0xffff) << 16);
            }
            case F32 -> MemorySegment.copy(m, Tensor.F32_LE, 4 * base, dst, 0, cols);
            default -> { for (int c = 0; c < cols; c++) dst[c] = w.getFloat(base + c); }
        }
        java.util.Arrays.fill(dst, cols, dst.length, 0f);
    }

    /** Quantizes 32 values at x[o..]; writes 32 bytes at q[qo..]; returns the f16 scale bits. */
    static short quantQ8(float[] x, int o, byte[] q, int qo) {
        float amax = 0;
        for (int k = 0; k < BLOCK; k++) amax = Math.max(amax, Math.abs(x[o + k]));
        short dh = Float.floatToFloat16(amax / 127f);
        float d = Float.float16ToFloat(dh);
        float id = d == 0 ? 0 : 1f / d;
        for (int k = 0; k < BLOCK; k++) {
            float v = Math.max(-127f, Math.min(127f, x[o + k] * id));
            q[qo + k] = (byte) (int) (v + (v < 0 ? -0.5f : 0.5f)); // round half away from zero, as GGML's roundf
        }
        return dh;
    }

    /** Quantizes 32 values at x[o..]; writes 16 bytes at q[qo..]; returns the f16 scale bits. */
    static short quantQ4(float[] x, int o, byte[] q, int qo) {
        float amax = 0, max = 0;
        for (int k = 0; k < BLOCK; k++) {
            float v = x[o + k];
            if (Math.abs(v) > amax) { amax = Math.abs(v); max = v; }
        }
        short dh = Float.floatToFloat16(max / -8f);
        float d = Float.float16ToFloat(dh);
        float id = d == 0 ? 0 : 1f / d;
        for (int k = 0; k < BLOCK / 2; k++) {
            int lo = Math.min(15, Math.max(0, (int) (x[o + k] * id + 8.5f)));
            int hi = Math.min(15, Math.max(0, (int) (x[o + k + 16] * id + 8.5f)));
            q[qo + k] = (byte) (lo | hi << 4);
        }
        return dh;
    }

    /** Bytes a weight occupies in memory (quantized layout included): what a matmul streams per use. */
    public static long bytesOf(Tensor t) {
        return t.dtype().isQuantized() ? storageBytes(t.dtype(), t.shape()) : t.numel() * t.dtype().bytes;
    }
}
