package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * {@code y[i, j] = sum_k x[i, k] * w[j, k] (+ b[j])} with float32 activations and f32, bf16, Q8_0 or Q4_0 weights.
 * <ul>
 *   <li>Few rows (decode): a matrix-vector product streaming each weight row once, converting it on the fly
 *       (bandwidth bound), split over output rows.</li>
 *   <li>Many rows (prefill, vision): a cache-blocked GEMM. For each {@link #KC}-deep slice, a panel of
 *       {@code NR = 2 * lanes} weight rows is converted to float32 and packed k-major ({@code [KC][NR]}, in L1),
 *       then a 6 x NR register-blocked micro-kernel (12 vector accumulators, broadcast activations) walks all
 *       activation rows. No reductions across lanes; workers own disjoint panels.</li>
 * </ul>
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
    static final int NR = 2 * L, MR = 6, KC = 256;
    /** From this many activation rows on, the packed GEMM is used (below it, row-blocked GEMV reads each weight row once). */
    static final int GEMM_MIN_ROWS = Integer.getInteger("vlm4j.gemmMinRows", 16);
    private static final int BLK = Quant.BLOCK;

    private MatMul() {}

    static float[] linear(float[] x, int n, int in, Tensor w, float[] bias) {
        int out = (int) w.dim(0);
        float[] y = new float[n * out];
        DType dt = w.dtype();
        if (n >= GEMM_MIN_ROWS) gemm(x, n, in, w, out, y);
        else if (dt.isQuantized()) Gemv.quant(x, n, in, w, out, y);
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

    // ---------------------------------------------------------------- packed GEMM (prefill, vision)

    private static void gemm(float[] x, int n, int in, Tensor w, int out, float[] y) {
        int panels = (out + NR - 1) / NR;
        Parallel.forRange(panels, 1, (p0, p1) -> {
            float[] panel = new float[KC * NR], row = new float[KC + BLK], tile = new float[MR * NR];
            for (int k0 = 0; k0 < in; k0 += KC) {
                int kc = Math.min(KC, in - k0);
                boolean accumulate = k0 > 0;
                for (int p = p0; p < p1; p++) {
                    int j0 = p * NR, cols = Math.min(NR, out - j0);
                    pack(w, in, j0, cols, k0, kc, panel, row);
                    int i0 = 0;
                    if (cols == NR) for (; i0 + MR <= n; i0 += MR) kernel6(x, i0 * in + k0, in, panel, kc, y, i0 * out + j0, out, accumulate);
                    for (; i0 < n; i0 += MR) {
                        int r = Math.min(MR, n - i0);
                        kernelTail(x, i0 * in + k0, in, r, panel, kc, tile);
                        for (int a = 0; a < r; a++) {
                            int yo = (i0 + a) * out + j0;
                            for (int c = 0; c < cols; c++) y[yo + c] = (accumulate ? y[yo + c] : 0f) + tile[a * NR + c];
                        }
                    }
                }
            }
        });
    }

    /** panel[kk * NR + c] = w[j0 + c, k0 + kk] as float32, zero for c >= cols. */
    private static void pack(Tensor w, int in, int j0, int cols, int k0, int kc, float[] panel, float[] row) {
        if (cols < NR) java.util.Arrays.fill(panel, 0f);
        for (int c = 0; c < cols; c++) {
            rowSlice(w, in, j0 + c, k0, kc, row);
            for (int kk = 0; kk < kc; kk++) panel[kk * NR + c] = row[kk];
        }
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
            case Q8_0, Q4_0 -> {
                int nb = Quant.blocksPerRow(in), qb = Quant.blockBytes(w.dtype());
                long so = Quant.scalesOffset(w.dtype(), w.shape());
                boolean q8 = w.dtype() == DType.Q8_0;
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
            default -> { for (int k = 0; k < kc; k++) row[k] = w.getFloat((long) j * in + k0 + k); }
        }
    }

    /** y[6 rows, NR cols] (+)= x[6 rows, kc] * panel[kc, NR]. */
    private static void kernel6(float[] x, int xo, int ldx, float[] p, int kc, float[] y, int yo, int ldy, boolean acc) {
        FloatVector c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        int y0 = yo, y1 = y0 + ldy, y2 = y1 + ldy, y3 = y2 + ldy, y4 = y3 + ldy, y5 = y4 + ldy;
        if (acc) {
            c00 = FloatVector.fromArray(F, y, y0); c01 = FloatVector.fromArray(F, y, y0 + L);
            c10 = FloatVector.fromArray(F, y, y1); c11 = FloatVector.fromArray(F, y, y1 + L);
            c20 = FloatVector.fromArray(F, y, y2); c21 = FloatVector.fromArray(F, y, y2 + L);
            c30 = FloatVector.fromArray(F, y, y3); c31 = FloatVector.fromArray(F, y, y3 + L);
            c40 = FloatVector.fromArray(F, y, y4); c41 = FloatVector.fromArray(F, y, y4 + L);
            c50 = FloatVector.fromArray(F, y, y5); c51 = FloatVector.fromArray(F, y, y5 + L);
        } else {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = FloatVector.zero(F);
        }
        int x0 = xo, x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx, x4 = x3 + ldx, x5 = x4 + ldx;
        for (int k = 0; k < kc; k++) {
            FloatVector w0 = FloatVector.fromArray(F, p, k * NR), w1 = FloatVector.fromArray(F, p, k * NR + L);
            FloatVector a = FloatVector.broadcast(F, x[x0 + k]);
            c00 = w0.fma(a, c00); c01 = w1.fma(a, c01);
            a = FloatVector.broadcast(F, x[x1 + k]);
            c10 = w0.fma(a, c10); c11 = w1.fma(a, c11);
            a = FloatVector.broadcast(F, x[x2 + k]);
            c20 = w0.fma(a, c20); c21 = w1.fma(a, c21);
            a = FloatVector.broadcast(F, x[x3 + k]);
            c30 = w0.fma(a, c30); c31 = w1.fma(a, c31);
            a = FloatVector.broadcast(F, x[x4 + k]);
            c40 = w0.fma(a, c40); c41 = w1.fma(a, c41);
            a = FloatVector.broadcast(F, x[x5 + k]);
            c50 = w0.fma(a, c50); c51 = w1.fma(a, c51);
        }
        c00.intoArray(y, y0); c01.intoArray(y, y0 + L);
        c10.intoArray(y, y1); c11.intoArray(y, y1 + L);
        c20.intoArray(y, y2); c21.intoArray(y, y2 + L);
        c30.intoArray(y, y3); c31.intoArray(y, y3 + L);
        c40.intoArray(y, y4); c41.intoArray(y, y4 + L);
        c50.intoArray(y, y5); c51.intoArray(y, y5 + L);
    }

    /** tile[r rows, NR] = x[r rows, kc] * panel (r < 6 or a partial panel). */
    private static void kernelTail(float[] x, int xo, int ldx, int r, float[] p, int kc, float[] tile) {
        for (int a = 0; a < r; a++) {
            FloatVector c0 = FloatVector.zero(F), c1 = c0;
            int xr = xo + a * ldx;
            for (int k = 0; k < kc; k++) {
                FloatVector b = FloatVector.broadcast(F, x[xr + k]);
                c0 = FloatVector.fromArray(F, p, k * NR).fma(b, c0);
                c1 = FloatVector.fromArray(F, p, k * NR + L).fma(b, c1);
            }
            c0.intoArray(tile, a * NR);
            c1.intoArray(tile, a * NR + L);
        }
    }
}
