package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * Matrix-vector products for a few activation rows (decode): {@code y[i, j] = sum_k x[i, k] * w[j, k]}. Each weight
 * row is streamed from memory once per call, converted on the fly; workers own contiguous ranges of output rows
 * (prefetch-friendly), in groups of {@link #G} rows that share each activation load.
 * <p>Q8_0: the group's f16 block scales are widened into a per-worker float buffer first, so the inner loop is, per
 * block and row, two int8-to-float conversions, a multiply, an FMA and one FMA with a broadcast scale. Where the
 * native kernel runs ({@link NativeKernels}: the same sums, plus a software prefetch) it replaces this one.
 */
final class Gemv {
    private static final VectorSpecies<Float> F = MatMul.F;
    private static final int L = F.length();
    private static final VectorSpecies<Short> S = VectorSpecies.of(short.class, VectorShape.forBitSize(Math.max(64, L * 16)));
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, VectorShape.forBitSize(L * 32));
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class, VectorShape.forBitSize(Math.max(64, L * 8)));
    private static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);
    private static final int BLK = Quant.BLOCK;
    /** Weight rows per pass (they share the activation loads; their Q8_0 scales are widened together). */
    static final int G = 4;
    /** Per-worker buffer of widened Q8_0 scales (G rows of a matrix). */
    private static final ThreadLocal<float[]> SCALES = ThreadLocal.withInitial(() -> new float[0]);

    private Gemv() {}

    /** Whether Q8_0 uses the native kernel where available (tests and probes compare the two paths). */
    static volatile boolean nativeQ8 = true;
    /**
     * Whether Q8_0 decoding quantizes its activation rows to 8 bits per 32-block and uses VNNI integer dot products
     * where the CPU has them ({@code -Dvlm4j.q8.vnni=false}: float activations). Each activation is kept as two 8-bit
     * digits (about 15 bits, see vlm4j_q8_quantize_rows): with one digit, as llama.cpp's Q8_0 x Q8_0, the top-1 of
     * decoded positions of the fixture model fell from 65/65 to 61/65 (QuantizedParityTest).
     */
    static volatile boolean vnniQ8 = !"false".equalsIgnoreCase(System.getProperty("vlm4j.q8.vnni"));

    /** Whether the Q8_0 kernel's block loop fits this vector length (two vectors per 32-value block). */
    static final boolean Q8_FAST = L == BLK / 2;

    /** Whether bf16 rows can be read as 32-bit pairs ({@link #dot4Bf16Pairs}): 16 pairs per vector. */
    static final boolean PAIRS = L == 16;
    /** Per-caller buffer of de-interleaved activation rows for the bf16 pair kernels. */
    private static final ThreadLocal<float[]> PAIRED_X = ThreadLocal.withInitial(() -> new float[0]);

    static void floats(float[] x, int n, int in, MemorySegment w, DType wt, int out, float[] y) {
        if (wt == DType.BF16 && n < 4 && PAIRS && w.isNative() && out >= G) {
            bf16Pairs(x, n, in, w, out, y);
            return;
        }
        Parallel.forRange(out, 16, (j0, j1) -> {
            for (int j = j0; j < j1; j++) {
                long wOff = (long) j * in * wt.bytes;
                int r = 0;
                if (wt == DType.BF16) {
                    for (; r + 8 <= n; r += 8) dot8Bf16(x, r, in, w, wOff, y, out, j);
                    for (; r + 4 <= n; r += 4) dot4Bf16(x, r, in, w, wOff, y, out, j);
                }
                for (; r < n; r++)
                    y[r * out + j] = wt == DType.BF16 ? dotBf16(x, r * in, w, wOff, in) : dotF32(x, r * in, w, wOff, in);
            }
        });
    }

    /**
     * One to three activation rows against bf16 weights, G weight rows per pass. A weight vector is loaded as 16
     * 32-bit words, each holding two bf16 values: {@code bits << 16} is the even element as float32 and
     * {@code bits & 0xffff0000} the odd one, so the activation row is de-interleaved once per call to match.
     */
    private static void bf16Pairs(float[] x, int n, int in, MemorySegment w, int out, float[] y) {
        float[] xx = Parallel.scratch(PAIRED_X, n * in);
        for (int r = 0; r < n; r++) deinterleave(x, r * in, in, xx);
        int groups = out / G;
        Parallel.forRange(groups, 4, (g0, g1) -> {
            for (int g = g0; g < g1; g++)
                for (int r = 0; r < n; r++) dot4Bf16Pairs(xx, r * in, in, w, 2L * g * G * in, y, r * out + g * G);
            if (g1 == groups)
                for (int j = groups * G; j < out; j++)
                    for (int r = 0; r < n; r++) y[r * out + j] = dotBf16(x, r * in, w, 2L * j * in, in);
        });
    }

    /** xp[o + c + i] = x[o + c + 2i], xp[o + c + 16 + i] = x[o + c + 2i + 1] per 32-value chunk c; the tail as is. */
    private static void deinterleave(float[] x, int o, int in, float[] xp) {
        int c = 0;
        for (; c + 2 * L <= in; c += 2 * L)
            for (int i = 0; i < L; i++) {
                xp[o + c + i] = x[o + c + 2 * i];
                xp[o + c + L + i] = x[o + c + 2 * i + 1];
            }
        System.arraycopy(x, o + c, xp, o + c, in - c);
    }

    /** Four consecutive bf16 weight rows (from byte wOff) against one de-interleaved activation row; y[yo .. yo + 4). */
    private static void dot4Bf16Pairs(float[] x, int xo, int in, MemorySegment w, long wOff, float[] y, int yo) {
        long rb = 2L * in;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int k = 0;
        for (; k + 2 * L <= in; k += 2 * L) {
            FloatVector xe = FloatVector.fromArray(F, x, xo + k), xd = FloatVector.fromArray(F, x, xo + k + L);
            long o = wOff + 2L * k;
            IntVector v0 = IntVector.fromMemorySegment(I, w, o, LE), v1 = IntVector.fromMemorySegment(I, w, o + rb, LE);
            IntVector v2 = IntVector.fromMemorySegment(I, w, o + 2 * rb, LE), v3 = IntVector.fromMemorySegment(I, w, o + 3 * rb, LE);
            a0 = xd.fma(odd(v0), xe.fma(even(v0), a0));
            a1 = xd.fma(odd(v1), xe.fma(even(v1), a1));
            a2 = xd.fma(odd(v2), xe.fma(even(v2), a2));
            a3 = xd.fma(odd(v3), xe.fma(even(v3), a3));
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            float xk = x[xo + k];
            long o = wOff + 2L * k;
            s0 += xk * MatMul.bf16At(w, o);
            s1 += xk * MatMul.bf16At(w, o + rb);
            s2 += xk * MatMul.bf16At(w, o + 2 * rb);
            s3 += xk * MatMul.bf16At(w, o + 3 * rb);
        }
        y[yo] = s0;
        y[yo + 1] = s1;
        y[yo + 2] = s2;
        y[yo + 3] = s3;
    }

    private static FloatVector even(IntVector pairs) { return pairs.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(); }

    private static FloatVector odd(IntVector pairs) { return pairs.and(0xffff0000).reinterpretAsFloats(); }

    static float dotBf16(float[] x, int xOff, MemorySegment w, long wOff, int in) {
        FloatVector acc = FloatVector.zero(F), acc2 = acc;
        int k = 0;
        for (; k <= in - 2 * L; k += 2 * L) {
            acc = FloatVector.fromArray(F, x, xOff + k).fma(MatMul.bf16(w, wOff + 2L * k), acc);
            acc2 = FloatVector.fromArray(F, x, xOff + k + L).fma(MatMul.bf16(w, wOff + 2L * (k + L)), acc2);
        }
        for (; k <= in - L; k += L) acc = FloatVector.fromArray(F, x, xOff + k).fma(MatMul.bf16(w, wOff + 2L * k), acc);
        float s = acc.add(acc2).reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) s += x[xOff + k] * MatMul.bf16At(w, wOff + 2L * k);
        return s;
    }

    private static void dot4Bf16(float[] x, int i0, int in, MemorySegment w, long wOff, float[] y, int out, int j) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        int k = 0;
        int x0 = i0 * in, x1 = x0 + in, x2 = x1 + in, x3 = x2 + in;
        for (; k <= in - L; k += L) {
            FloatVector wv = MatMul.bf16(w, wOff + 2L * k);
            a0 = FloatVector.fromArray(F, x, x0 + k).fma(wv, a0);
            a1 = FloatVector.fromArray(F, x, x1 + k).fma(wv, a1);
            a2 = FloatVector.fromArray(F, x, x2 + k).fma(wv, a2);
            a3 = FloatVector.fromArray(F, x, x3 + k).fma(wv, a3);
        }
        float s0 = a0.reduceLanes(VectorOperators.ADD), s1 = a1.reduceLanes(VectorOperators.ADD);
        float s2 = a2.reduceLanes(VectorOperators.ADD), s3 = a3.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) {
            float wk = MatMul.bf16At(w, wOff + 2L * k);
            s0 += x[x0 + k] * wk; s1 += x[x1 + k] * wk; s2 += x[x2 + k] * wk; s3 += x[x3 + k] * wk;
        }
        y[i0 * out + j] = s0;
        y[(i0 + 1) * out + j] = s1;
        y[(i0 + 2) * out + j] = s2;
        y[(i0 + 3) * out + j] = s3;
    }

    /** Eight activation rows against one bf16 weight row: each weight vector is loaded and widened once. */
    private static void dot8Bf16(float[] x, int i0, int in, MemorySegment w, long wOff, float[] y, int out, int j) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        int k = 0;
        int x0 = i0 * in;
        for (; k <= in - L; k += L) {
            FloatVector wv = MatMul.bf16(w, wOff + 2L * k);
            int o = x0 + k;
            a0 = FloatVector.fromArray(F, x, o).fma(wv, a0);
            a1 = FloatVector.fromArray(F, x, o + in).fma(wv, a1);
            a2 = FloatVector.fromArray(F, x, o + 2 * in).fma(wv, a2);
            a3 = FloatVector.fromArray(F, x, o + 3 * in).fma(wv, a3);
            a4 = FloatVector.fromArray(F, x, o + 4 * in).fma(wv, a4);
            a5 = FloatVector.fromArray(F, x, o + 5 * in).fma(wv, a5);
            a6 = FloatVector.fromArray(F, x, o + 6 * in).fma(wv, a6);
            a7 = FloatVector.fromArray(F, x, o + 7 * in).fma(wv, a7);
        }
        float[] s = {a0.reduceLanes(VectorOperators.ADD), a1.reduceLanes(VectorOperators.ADD), a2.reduceLanes(VectorOperators.ADD),
                a3.reduceLanes(VectorOperators.ADD), a4.reduceLanes(VectorOperators.ADD), a5.reduceLanes(VectorOperators.ADD),
                a6.reduceLanes(VectorOperators.ADD), a7.reduceLanes(VectorOperators.ADD)};
        for (; k < in; k++) {
            float wk = MatMul.bf16At(w, wOff + 2L * k);
            for (int r = 0; r < 8; r++) s[r] += x[x0 + r * in + k] * wk;
        }
        for (int r = 0; r < 8; r++) y[(i0 + r) * out + j] = s[r];
    }

    static float dotF32(float[] x, int xOff, MemorySegment w, long wOff, int in) {
        FloatVector acc = FloatVector.zero(F);
        int k = 0;
        for (; k <= in - L; k += L)
            acc = FloatVector.fromArray(F, x, xOff + k).fma(FloatVector.fromMemorySegment(F, w, wOff + 4L * k, LE), acc);
        float s = acc.reduceLanes(VectorOperators.ADD);
        for (; k < in; k++) s += x[xOff + k] * w.get(F32, wOff + 4L * k);
        return s;
    }

    static void quant(float[] x, int n, int in, Tensor w, int out, float[] y) {
        if (w.dtype() == DType.Q8_0 && quantMany(x, n, in, new Tensor[]{w}, new float[][]{y})) return;   // native
        int nb = Quant.blocksPerRow(in), pin = nb * BLK;
        float[] xp = x;
        if (pin != in) { // zero-padded copy so every block is whole
            xp = new float[n * pin];
            for (int r = 0; r < n; r++) System.arraycopy(x, r * in, xp, r * pin, in);
        }
        final float[] xx = xp;
        MemorySegment m = w.data();
        long so = Quant.scalesOffset(w.dtype(), w.shape());
        if (w.dtype() == DType.Q8_0 && Q8_FAST) {
            Parallel.forRange((out + G - 1) / G, 4, (g0, g1) -> q8Groups(xx, n, pin, m, so, nb, out, y, g0, g1));
            return;
        }
        boolean q8 = w.dtype() == DType.Q8_0;
        int qb = Quant.blockBytes(w.dtype());
        Parallel.forRange(out, 16, (j0, j1) -> {
            for (int j = j0; j < j1; j++) {
                long qOff = (long) j * nb * qb, sOff = so + 2L * j * nb;
                for (int r = 0; r < n; r++)
                    y[r * out + j] = q8 ? dotQ8(xx, r * pin, m, qOff, sOff, nb) : dotQ4(xx, r * pin, m, qOff, sOff, nb);
            }
        });
    }

    /**
     * Several Q8_0 matrices of the same input width against the same activation rows (q/k/v, gate/up) in one
     * parallel region, so the workers meet once instead of once per matrix; {@code ys[i]} gets {@code n x out_i}.
     * Returns false (nothing done) unless the native kernel runs and every matrix is an off-heap Q8_0 one.
     */
    static boolean quantMany(float[] x, int n, int in, Tensor[] ws, float[][] ys) {
        Activations a = Activations.of(x, n, in, ws);
        if (a == null) return false;
        int[] first = new int[ws.length + 1];   // first row group of each matrix in the joint range
        for (int i = 0; i < ws.length; i++) first[i + 1] = first[i] + (int) ((ws[i].dim(0) + G - 1) / G);
        Parallel.forRangeGuided(first[ws.length], 4, (g0, g1) -> {
            for (int i = 0; i < ws.length; i++) {
                int lo = Math.max(g0, first[i]), hi = Math.min(g1, first[i + 1]);
                if (lo >= hi) continue;
                int out = (int) ws[i].dim(0);
                a.product(ws[i], (lo - first[i]) * G, Math.min(out, (hi - first[i]) * G), ys[i]);
            }
        });
        return true;
    }

    /** The calling thread's gate and up product buffers of {@link #swiGlu}, reused across calls. */
    private static final ThreadLocal<float[]> GATE = ThreadLocal.withInitial(() -> new float[0]), UP = ThreadLocal.withInitial(() -> new float[0]);

    /**
     * The gated MLP's inner activation {@code y = silu(x . gate^T) * (x . up^T)} ({@code n x out}) for two Q8_0
     * matrices of the same shape, in one region: each piece of output rows takes its gate rows, its up rows and their
     * product, so the SiLU runs on the workers, on values still in cache. Each output is the same float as
     * {@link #quantMany} followed by {@link VectorOps#siluMul} would give. Returns false (nothing done) where
     * {@link #quantMany} would.
     */
    static boolean swiGlu(float[] x, int n, int in, Tensor gateW, Tensor upW, float[] y) {
        if (gateW.rank() != 2 || !java.util.Arrays.equals(gateW.shape(), upW.shape())) return false;
        Activations a = Activations.of(x, n, in, new Tensor[]{gateW, upW});
        if (a == null) return false;
        int out = (int) gateW.dim(0);
        // the gate and up products only live inside the region: the calling thread's buffers, reused (fresh arrays
        // cost ~90 KB of cold memory to zero per layer: a 3B decode step's SwiGLU caller side 1.06-1.20 -> 0.58-0.60 ms
        // in alternating runs)
        float[] g = Parallel.scratch(GATE, n * out), u = Parallel.scratch(UP, n * out);
        Parallel.forRangeGuided((out + G - 1) / G, 4, (g0, g1) -> {
            int j0 = g0 * G, j1 = Math.min(out, g1 * G);
            a.product(gateW, j0, j1, g);
            a.product(upW, j0, j1, u);
            for (int r = 0; r < n; r++) {
                if (Simd.AVAILABLE) VectorOps.siluMul(g, u, y, r * out + j0, r * out + j1);
                else ScalarKernels.siluMul(g, u, y, r * out + j0, r * out + j1);
            }
        });
        return true;
    }

    /**
     * Activation rows ready for the native Q8_0 kernels: zero-padded to whole blocks and, with VNNI, quantized once
     * (into the calling thread's reused buffers) for every matrix and every worker of the region.
     */
    private record Activations(float[] xp, int n, int pin, int nb, byte[] xq, int[] c1, float[] xd) {
        /** Null unless the native kernel runs and every matrix is an off-heap Q8_0 one of input width {@code in}. */
        static Activations of(float[] x, int n, int in, Tensor[] ws) {
            if (!nativeQ8 || !NativeKernels.q8Available()) return null;
            for (Tensor w : ws)
                if (w.dtype() != DType.Q8_0 || !w.data().isNative() || w.rank() != 2 || w.dim(1) != in) return null;
            int nb = Quant.blocksPerRow(in), pin = nb * BLK;
            float[] xp = x;
            if (pin != in) {
                xp = new float[n * pin];
                for (int r = 0; r < n; r++) System.arraycopy(x, r * in, xp, r * pin, in);
            }
            if (!(vnniQ8 && NativeKernels.q8VnniAvailable())) return new Activations(xp, n, pin, nb, null, null, null);
            QuantizedRows qr = QuantizedRows.forCaller(n, pin, nb);
            NativeKernels.q8Quantize(xp, n, pin, qr.xq, qr.c1, qr.xd);
            return new Activations(xp, n, pin, nb, qr.xq, qr.c1, qr.xd);
        }

        /** Rows [j0, j1) of {@code w} against every activation row: {@code y[r * out + j]}. */
        void product(Tensor w, int j0, int j1, float[] y) {
            int out = (int) w.dim(0);
            long q = w.data().address(), s = q + Quant.scalesOffset(DType.Q8_0, w.shape());
            if (xq != null) NativeKernels.q8GemvVnni(xq, c1, xd, n, pin, q, s, nb, j0, j1, out, y);
            else NativeKernels.q8Gemv(xp, n, pin, q, s, nb, j0, j1, out, y);
        }
    }

    /**
     * Buffers for activation rows quantized by {@link NativeKernels#q8Quantize} (every element written by each call,
     * so they may be larger than needed): the calling thread's, reused, outside parallel regions; fresh inside one.
     */
    private static final class QuantizedRows {
        private static final ThreadLocal<QuantizedRows> CACHE = ThreadLocal.withInitial(QuantizedRows::new);
        byte[] xq = new byte[0];
        int[] c1 = new int[0];
        float[] xd = new float[0];

        static QuantizedRows forCaller(int n, int pin, int nb) {
            QuantizedRows r = Parallel.inRegion() ? new QuantizedRows() : CACHE.get();
            if (r.xq.length < 2 * n * pin) r.xq = new byte[2 * n * pin];
            if (r.c1.length < n * pin / 4) r.c1 = new int[n * pin / 4];
            if (r.xd.length < 2 * n * nb) r.xd = new float[2 * n * nb];
            return r;
        }
    }

    /** Q8_0 output rows [G * g0, G * g1): whole groups of G rows, then single rows at the end of the matrix. */
    private static void q8Groups(float[] x, int n, int pin, MemorySegment w, long so, int nb, int out, float[] y, int g0, int g1) {
        float[] sc = SCALES.get();
        if (sc.length < G * nb) SCALES.set(sc = new float[G * nb]);
        for (int g = g0; g < g1; g++) {
            int j = g * G;
            if (j + G <= out) {
                widenScales(w, so + 2L * j * nb, G * nb, sc);
                for (int r = 0; r < n; r++) dot4Q8(x, r * pin, w, (long) j * pin, pin, nb, sc, y, r * out + j);
            } else {
                for (; j < out; j++)
                    for (int r = 0; r < n; r++) y[r * out + j] = dotQ8(x, r * pin, w, (long) j * pin, so + 2L * j * nb, nb);
            }
        }
    }

    /** sc[0, count) = the f16 scales at byte offset off, as float32. */
    private static void widenScales(MemorySegment w, long off, int count, float[] sc) {
        for (int i = 0; i < count; i++) sc[i] = Float.float16ToFloat(w.get(I16, off + 2L * i));
    }

    private static FloatVector q8Half(MemorySegment w, long off) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, off, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    /**
     * Four consecutive Q8_0 rows (quant bytes from q0, rowBytes apart; widened scales sc[r * nb + b]) against one
     * zero-padded activation row; writes y[yo .. yo + 4). Needs {@link #Q8_FAST}.
     */
    private static void dot4Q8(float[] x, int xo, MemorySegment w, long q0, long rowBytes, int nb, float[] sc, float[] y, int yo) {
        long q1 = q0 + rowBytes, q2 = q1 + rowBytes, q3 = q2 + rowBytes;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < nb; b++) {
            int xb = xo + b * BLK;
            long o = (long) b * BLK;
            FloatVector xl = FloatVector.fromArray(F, x, xb), xh = FloatVector.fromArray(F, x, xb + L);
            a0 = xh.fma(q8Half(w, q0 + o + L), xl.mul(q8Half(w, q0 + o))).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = xh.fma(q8Half(w, q1 + o + L), xl.mul(q8Half(w, q1 + o))).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
            a2 = xh.fma(q8Half(w, q2 + o + L), xl.mul(q8Half(w, q2 + o))).fma(FloatVector.broadcast(F, sc[2 * nb + b]), a2);
            a3 = xh.fma(q8Half(w, q3 + o + L), xl.mul(q8Half(w, q3 + o))).fma(FloatVector.broadcast(F, sc[3 * nb + b]), a3);
        }
        y[yo] = a0.reduceLanes(VectorOperators.ADD);
        y[yo + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[yo + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[yo + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    /** Dot of a zero-padded activation row with one Q8_0 weight row of nb blocks. */
    static float dotQ8(float[] x, int xOff, MemorySegment w, long qOff, long sOff, int nb) {
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++) {
            FloatVector blk = FloatVector.zero(F);
            long q = qOff + (long) b * BLK;
            int xo = xOff + b * BLK;
            for (int s = 0; s < BLK; s += L)
                blk = FloatVector.fromArray(F, x, xo + s).fma(q8Half(w, q + s), blk);
            acc = blk.fma(FloatVector.broadcast(F, Float.float16ToFloat(w.get(I16, sOff + 2L * b))), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    /** Dot of a zero-padded activation row with one Q4_0 weight row of nb blocks. */
    static float dotQ4(float[] x, int xOff, MemorySegment w, long qOff, long sOff, int nb) {
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++) {
            FloatVector blk = FloatVector.zero(F);
            long q = qOff + (long) b * (BLK / 2);
            int xo = xOff + b * BLK;
            for (int s = 0; s < BLK / 2; s += L) {
                ByteVector raw = ByteVector.fromMemorySegment(B, w, q + s, LE);
                ByteVector lo = raw.and((byte) 15).sub((byte) 8), hi = raw.lanewise(VectorOperators.LSHR, 4).sub((byte) 8);
                blk = FloatVector.fromArray(F, x, xo + s).fma((FloatVector) lo.convertShape(VectorOperators.B2F, F, 0), blk);
                blk = FloatVector.fromArray(F, x, xo + 16 + s).fma((FloatVector) hi.convertShape(VectorOperators.B2F, F, 0), blk);
            }
            acc = blk.fma(FloatVector.broadcast(F, Float.float16ToFloat(w.get(I16, sOff + 2L * b))), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }
}
