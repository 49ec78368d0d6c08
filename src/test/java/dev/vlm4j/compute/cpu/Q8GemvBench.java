package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.*;
import org.openjdk.jmh.annotations.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.concurrent.TimeUnit;

/**
 * Single-thread formulations of the Q8_0 matrix-vector product (one activation row), to pick the fastest kernel.
 * The weight (2048 -> 11008, 23 MB) stays in the last-level cache, so this measures the kernel's compute rate.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MILLISECONDS)
@Warmup(iterations = 3, time = 1)
@Measurement(iterations = 5, time = 1)
@Fork(value = 1, jvmArgsAppend = {"--add-modules", "jdk.incubator.vector", "--enable-native-access=ALL-UNNAMED"})
public class Q8GemvBench {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    static final VectorSpecies<Byte> B128 = ByteVector.SPECIES_128, B256 = ByteVector.SPECIES_256;
    static final VectorSpecies<Short> S256 = ShortVector.SPECIES_256;
    static final VectorSpecies<Integer> I512 = IntVector.SPECIES_512;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    static final ValueLayout.OfFloat F32L = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(LE);

    @Param({"11008"})
    public int out;
    public int in = 2048;

    Tensor w;
    MemorySegment m, bfm;
    long so;
    int nb;
    float[] x, y;
    short[] xq; // activation quantized per block to int8, widened to int16
    float[] xd; // per-block activation scales

    @Setup
    public void setup() {
        float[] v = CpuKernelsTest.randn(out * in, 1, 0.02f);
        w = Quant.quantize(Tensor.of(v, out, in), DType.Q8_0);
        MemorySegment heap = CpuKernelsTest.bf16(v, out, in).data();
        bfm = java.lang.foreign.Arena.ofAuto().allocate(heap.byteSize(), 64);
        MemorySegment.copy(heap, 0, bfm, 0, heap.byteSize());
        m = w.data();
        so = Quant.scalesOffset(DType.Q8_0, w.shape());
        nb = in / 32;
        x = CpuKernelsTest.randn(in, 2, 1f);
        y = new float[out];
        xq = new short[in];
        xd = new float[nb];
    }

    @Benchmark
    public float[] current() {
        for (int j = 0; j < out; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    @Benchmark
    public float[] bf16Row() {
        for (int j = 0; j < out; j++) y[j] = Gemv.dotBf16(x, 0, bfm, 2L * j * in, in);
        return y;
    }

    /** One row, two blocks per step into two accumulators. */
    @Benchmark
    public float[] unroll2() {
        for (int j = 0; j < out; j++) y[j] = dotQ8u2(x, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    /** Four rows per pass, sharing the activation loads. */
    @Benchmark
    public float[] rows4() {
        int j = 0;
        for (; j + 4 <= out; j += 4) dot4(x, m, j, nb, so, y);
        for (; j < out; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    /** Two rows per pass. */
    @Benchmark
    public float[] rows2() {
        int j = 0;
        for (; j + 2 <= out; j += 2) dot2(x, m, j, nb, so, y);
        for (; j < out; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    /** One 256-bit load per block, widened in two halves. */
    @Benchmark
    public float[] load256() {
        for (int j = 0; j < out; j++) y[j] = dotQ8w(x, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    /** Activation quantized to int8 per block; int16 multiplies, int32 sums per block. */
    @Benchmark
    public float[] intPath() {
        quantX();
        for (int j = 0; j < out; j++) y[j] = dotInt(m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    static float dotQ8u2(float[] x, MemorySegment w, long qOff, long sOff, int nb) {
        FloatVector acc0 = FloatVector.zero(F), acc1 = acc0;
        for (int b = 0; b < nb; b += 2) {
            long q = qOff + (long) b * 32;
            int xo = b * 32;
            FloatVector b0 = FloatVector.fromArray(F, x, xo).mul(cvt(w, q));
            FloatVector b1 = FloatVector.fromArray(F, x, xo + 32).mul(cvt(w, q + 32));
            b0 = FloatVector.fromArray(F, x, xo + 16).fma(cvt(w, q + 16), b0);
            b1 = FloatVector.fromArray(F, x, xo + 48).fma(cvt(w, q + 48), b1);
            acc0 = b0.fma(scale(w, sOff + 2L * b), acc0);
            acc1 = b1.fma(scale(w, sOff + 2L * b + 2), acc1);
        }
        return acc0.add(acc1).reduceLanes(VectorOperators.ADD);
    }

    static FloatVector cvt(MemorySegment w, long off) {
        return (FloatVector) ByteVector.fromMemorySegment(B128, w, off, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    static FloatVector scale(MemorySegment w, long off) {
        return FloatVector.broadcast(F, Float.float16ToFloat(w.get(I16, off)));
    }

    static void dot4(float[] x, MemorySegment w, int j, int nb, long so, float[] y) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
        long s0 = so + 2L * j * nb, s1 = s0 + 2L * nb, s2 = s1 + 2L * nb, s3 = s2 + 2L * nb;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            a0 = xh.fma(cvt(w, q0 + o + 16), xl.mul(cvt(w, q0 + o))).fma(scale(w, s0 + 2L * b), a0);
            a1 = xh.fma(cvt(w, q1 + o + 16), xl.mul(cvt(w, q1 + o))).fma(scale(w, s1 + 2L * b), a1);
            a2 = xh.fma(cvt(w, q2 + o + 16), xl.mul(cvt(w, q2 + o))).fma(scale(w, s2 + 2L * b), a2);
            a3 = xh.fma(cvt(w, q3 + o + 16), xl.mul(cvt(w, q3 + o))).fma(scale(w, s3 + 2L * b), a3);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    static void dot2(float[] x, MemorySegment w, int j, int nb, long so, float[] y) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb;
        long s0 = so + 2L * j * nb, s1 = s0 + 2L * nb;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, c0 = a0, c1 = a0;
        for (int b = 0; b < nb; b += 2) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            a0 = xh.fma(cvt(w, q0 + o + 16), xl.mul(cvt(w, q0 + o))).fma(scale(w, s0 + 2L * b), a0);
            a1 = xh.fma(cvt(w, q1 + o + 16), xl.mul(cvt(w, q1 + o))).fma(scale(w, s1 + 2L * b), a1);
            xl = FloatVector.fromArray(F, x, xo + 32);
            xh = FloatVector.fromArray(F, x, xo + 48);
            c0 = xh.fma(cvt(w, q0 + o + 48), xl.mul(cvt(w, q0 + o + 32))).fma(scale(w, s0 + 2L * b + 2), c0);
            c1 = xh.fma(cvt(w, q1 + o + 48), xl.mul(cvt(w, q1 + o + 32))).fma(scale(w, s1 + 2L * b + 2), c1);
        }
        y[j] = a0.add(c0).reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.add(c1).reduceLanes(VectorOperators.ADD);
    }

    static float dotQ8w(float[] x, MemorySegment w, long qOff, long sOff, int nb) {
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++) {
            long q = qOff + (long) b * 32;
            int xo = b * 32;
            ByteVector raw = ByteVector.fromMemorySegment(B256, w, q, LE);
            FloatVector lo = (FloatVector) raw.convertShape(VectorOperators.B2F, F, 0);
            FloatVector hi = (FloatVector) raw.convertShape(VectorOperators.B2F, F, 1);
            FloatVector blk = FloatVector.fromArray(F, x, xo + 16).fma(hi, FloatVector.fromArray(F, x, xo).mul(lo));
            acc = blk.fma(scale(w, sOff + 2L * b), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    void quantX() {
        for (int b = 0; b < nb; b++) {
            float amax = 0;
            for (int k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(x[b * 32 + k]));
            float d = amax / 127f, id = d == 0 ? 0 : 1 / d;
            xd[b] = d;
            for (int k = 0; k < 32; k++) xq[b * 32 + k] = (short) Math.round(x[b * 32 + k] * id);
        }
    }

    float dotInt(MemorySegment w, long qOff, long sOff, int nb) {
        FloatVector acc = FloatVector.zero(F);
        for (int b = 0; b < nb; b++) {
            ShortVector wq = (ShortVector) ByteVector.fromMemorySegment(B256, w, qOff + (long) b * 32, LE)
                    .convertShape(VectorOperators.B2S, ShortVector.SPECIES_512, 0);
            ShortVector p = wq.mul(ShortVector.fromArray(ShortVector.SPECIES_512, xq, b * 32));
            IntVector lo = (IntVector) p.convertShape(VectorOperators.S2I, I512, 0);
            IntVector hi = (IntVector) p.convertShape(VectorOperators.S2I, I512, 1);
            FloatVector s = (FloatVector) lo.add(hi).convertShape(VectorOperators.I2F, F, 0);
            acc = s.fma(FloatVector.broadcast(F, Float.float16ToFloat(w.get(I16, sOff + 2L * b)) * xd[b]), acc);
        }
        return acc.reduceLanes(VectorOperators.ADD);
    }

    float[] sc = new float[4 * 64];

    /** Four rows per pass, scales widened to float first (one broadcast load per block). */
    @Benchmark
    public float[] rows4s() {
        int j = 0;
        for (; j + 4 <= out; j += 4) dot4s(x, m, j, nb, so, y, sc);
        for (; j < out; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    /** Four rows per pass, 256-bit loads. */
    @Benchmark
    public float[] rows4w() {
        int j = 0;
        for (; j + 4 <= out; j += 4) dot4w(x, m, j, nb, so, y);
        for (; j < out; j++) y[j] = Gemv.dotQ8(x, 0, m, (long) j * nb * 32, so + 2L * j * nb, nb);
        return y;
    }

    static void dot4s(float[] x, MemorySegment w, int j, int nb, long so, float[] y, float[] sc) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
        long s0 = so + 2L * j * nb;
        for (int i = 0; i < 4 * nb; i++) sc[i] = Float.float16ToFloat(w.get(I16, s0 + 2L * i));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            a0 = xh.fma(cvt(w, q0 + o + 16), xl.mul(cvt(w, q0 + o))).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = xh.fma(cvt(w, q1 + o + 16), xl.mul(cvt(w, q1 + o))).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
            a2 = xh.fma(cvt(w, q2 + o + 16), xl.mul(cvt(w, q2 + o))).fma(FloatVector.broadcast(F, sc[2 * nb + b]), a2);
            a3 = xh.fma(cvt(w, q3 + o + 16), xl.mul(cvt(w, q3 + o))).fma(FloatVector.broadcast(F, sc[3 * nb + b]), a3);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    static FloatVector cvtw(ByteVector raw, int part) {
        return (FloatVector) raw.convertShape(VectorOperators.B2F, F, part);
    }

    static void dot4w(float[] x, MemorySegment w, int j, int nb, long so, float[] y) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
        long s0 = so + 2L * j * nb, s1 = s0 + 2L * nb, s2 = s1 + 2L * nb, s3 = s2 + 2L * nb;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            ByteVector r0 = ByteVector.fromMemorySegment(B256, w, q0 + o, LE), r1 = ByteVector.fromMemorySegment(B256, w, q1 + o, LE);
            ByteVector r2 = ByteVector.fromMemorySegment(B256, w, q2 + o, LE), r3 = ByteVector.fromMemorySegment(B256, w, q3 + o, LE);
            a0 = xh.fma(cvtw(r0, 1), xl.mul(cvtw(r0, 0))).fma(scale(w, s0 + 2L * b), a0);
            a1 = xh.fma(cvtw(r1, 1), xl.mul(cvtw(r1, 0))).fma(scale(w, s1 + 2L * b), a1);
            a2 = xh.fma(cvtw(r2, 1), xl.mul(cvtw(r2, 0))).fma(scale(w, s2 + 2L * b), a2);
            a3 = xh.fma(cvtw(r3, 1), xl.mul(cvtw(r3, 0))).fma(scale(w, s3 + 2L * b), a3);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    /** One row, scales widened to float first. */
    @Benchmark
    public float[] rows1s() {
        for (int j = 0; j < out; j++) {
            long s0 = so + 2L * j * nb;
            for (int i = 0; i < nb; i++) sc[i] = Float.float16ToFloat(m.get(I16, s0 + 2L * i));
            y[j] = dot1s(x, m, (long) j * nb * 32, nb, sc);
        }
        return y;
    }

    static float dot1s(float[] x, MemorySegment w, long q0, int nb, float[] sc) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0; b < nb; b += 2) {
            int xo = b * 32;
            long o = q0 + (long) b * 32;
            a0 = FloatVector.fromArray(F, x, xo + 16).fma(cvt(w, o + 16), FloatVector.fromArray(F, x, xo).mul(cvt(w, o))).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = FloatVector.fromArray(F, x, xo + 48).fma(cvt(w, o + 48), FloatVector.fromArray(F, x, xo + 32).mul(cvt(w, o + 32))).fma(FloatVector.broadcast(F, sc[b + 1]), a1);
        }
        return a0.add(a1).reduceLanes(VectorOperators.ADD);
    }

    float[] sc8 = new float[8 * 64];

    /** Eight rows per pass in two groups of four sharing the scale conversion loop. */
    @Benchmark
    public float[] rows2s() {
        int j = 0;
        for (; j + 2 <= out; j += 2) dot2s(x, m, j, nb, so, y, sc);
        return y;
    }

    static void dot2s(float[] x, MemorySegment w, int j, int nb, long so, float[] y, float[] sc) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb;
        long s0 = so + 2L * j * nb;
        for (int i = 0; i < 2 * nb; i++) sc[i] = Float.float16ToFloat(w.get(I16, s0 + 2L * i));
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            a0 = xh.fma(cvt(w, q0 + o + 16), xl.mul(cvt(w, q0 + o))).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = xh.fma(cvt(w, q1 + o + 16), xl.mul(cvt(w, q1 + o))).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
    }

    /** Scale folded into the int8 value before the FMA with x (one product per block): w = cvt(q) * d. */
    @Benchmark
    public float[] rows4m() {
        for (int j = 0; j + 4 <= out; j += 4) dot4m(x, m, j, nb, so, y, sc);
        return y;
    }

    static void dot4m(float[] x, MemorySegment w, int j, int nb, long so, float[] y, float[] sc) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
        long s0 = so + 2L * j * nb;
        for (int i = 0; i < 4 * nb; i++) sc[i] = Float.float16ToFloat(w.get(I16, s0 + 2L * i));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, c0 = a0, c1 = a0, c2 = a0, c3 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            FloatVector d0 = FloatVector.broadcast(F, sc[b]), d1 = FloatVector.broadcast(F, sc[nb + b]);
            FloatVector d2 = FloatVector.broadcast(F, sc[2 * nb + b]), d3 = FloatVector.broadcast(F, sc[3 * nb + b]);
            a0 = xl.mul(d0).fma(cvt(w, q0 + o), a0); c0 = xh.mul(d0).fma(cvt(w, q0 + o + 16), c0);
            a1 = xl.mul(d1).fma(cvt(w, q1 + o), a1); c1 = xh.mul(d1).fma(cvt(w, q1 + o + 16), c1);
            a2 = xl.mul(d2).fma(cvt(w, q2 + o), a2); c2 = xh.mul(d2).fma(cvt(w, q2 + o + 16), c2);
            a3 = xl.mul(d3).fma(cvt(w, q3 + o), a3); c3 = xh.mul(d3).fma(cvt(w, q3 + o + 16), c3);
        }
        y[j] = a0.add(c0).reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.add(c1).reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.add(c2).reduceLanes(VectorOperators.ADD);
        y[j + 3] = a3.add(c3).reduceLanes(VectorOperators.ADD);
    }

    /** Four rows per pass, two blocks per step. */
    @Benchmark
    public float[] rows4u() {
        for (int j = 0; j + 4 <= out; j += 4) dot4u(x, m, j, nb, so, y, sc);
        return y;
    }

    static FloatVector blk(FloatVector xl, FloatVector xh, MemorySegment w, long q) {
        return xh.fma(cvt(w, q + 16), xl.mul(cvt(w, q)));
    }

    static void dot4u(float[] x, MemorySegment w, int j, int nb, long so, float[] y, float[] sc) {
        long rb = (long) nb * 32;
        long q0 = j * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
        long s0 = so + 2L * j * nb;
        for (int i = 0; i < 4 * nb; i++) sc[i] = Float.float16ToFloat(w.get(I16, s0 + 2L * i));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int b = 0; b < nb; b += 2) {
            int xo = b * 32;
            long o = (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            FloatVector xl2 = FloatVector.fromArray(F, x, xo + 32), xh2 = FloatVector.fromArray(F, x, xo + 48);
            a0 = blk(xl, xh, w, q0 + o).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = blk(xl, xh, w, q1 + o).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
            a2 = blk(xl, xh, w, q2 + o).fma(FloatVector.broadcast(F, sc[2 * nb + b]), a2);
            a3 = blk(xl, xh, w, q3 + o).fma(FloatVector.broadcast(F, sc[3 * nb + b]), a3);
            a0 = blk(xl2, xh2, w, q0 + o + 32).fma(FloatVector.broadcast(F, sc[b + 1]), a0);
            a1 = blk(xl2, xh2, w, q1 + o + 32).fma(FloatVector.broadcast(F, sc[nb + b + 1]), a1);
            a2 = blk(xl2, xh2, w, q2 + o + 32).fma(FloatVector.broadcast(F, sc[2 * nb + b + 1]), a2);
            a3 = blk(xl2, xh2, w, q3 + o + 32).fma(FloatVector.broadcast(F, sc[3 * nb + b + 1]), a3);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD);
        y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD);
        y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
    }

    /** Eight rows per pass. */
    @Benchmark
    public float[] rows8s() {
        for (int j = 0; j + 8 <= out; j += 8) dot8s(x, m, j, nb, so, y, sc8);
        return y;
    }

    static void dot8s(float[] x, MemorySegment w, int j, int nb, long so, float[] y, float[] sc) {
        long rb = (long) nb * 32;
        long q0 = j * rb;
        long s0 = so + 2L * j * nb;
        for (int i = 0; i < 8 * nb; i++) sc[i] = Float.float16ToFloat(w.get(I16, s0 + 2L * i));
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
        for (int b = 0; b < nb; b++) {
            int xo = b * 32;
            long o = q0 + (long) b * 32;
            FloatVector xl = FloatVector.fromArray(F, x, xo), xh = FloatVector.fromArray(F, x, xo + 16);
            a0 = blk(xl, xh, w, o).fma(FloatVector.broadcast(F, sc[b]), a0);
            a1 = blk(xl, xh, w, o + rb).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
            a2 = blk(xl, xh, w, o + 2 * rb).fma(FloatVector.broadcast(F, sc[2 * nb + b]), a2);
            a3 = blk(xl, xh, w, o + 3 * rb).fma(FloatVector.broadcast(F, sc[3 * nb + b]), a3);
            a4 = blk(xl, xh, w, o + 4 * rb).fma(FloatVector.broadcast(F, sc[4 * nb + b]), a4);
            a5 = blk(xl, xh, w, o + 5 * rb).fma(FloatVector.broadcast(F, sc[5 * nb + b]), a5);
            a6 = blk(xl, xh, w, o + 6 * rb).fma(FloatVector.broadcast(F, sc[6 * nb + b]), a6);
            a7 = blk(xl, xh, w, o + 7 * rb).fma(FloatVector.broadcast(F, sc[7 * nb + b]), a7);
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD); y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD); y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
        y[j + 4] = a4.reduceLanes(VectorOperators.ADD); y[j + 5] = a5.reduceLanes(VectorOperators.ADD);
        y[j + 6] = a6.reduceLanes(VectorOperators.ADD); y[j + 7] = a7.reduceLanes(VectorOperators.ADD);
    }

    float[] xperm;

    /** bf16 via 32-bit loads: odd elements = bits & 0xffff0000, even = bits << 16, against a de-interleaved x. */
    @Benchmark
    public float[] bf16Perm() {
        if (xperm == null) {
            xperm = new float[in];
            for (int c = 0; c < in; c += 32)
                for (int i = 0; i < 16; i++) { xperm[c + i] = x[c + 2 * i]; xperm[c + 16 + i] = x[c + 2 * i + 1]; }
        }
        for (int j = 0; j < out; j++) y[j] = dotPerm(xperm, bfm, 2L * j * in, in);
        return y;
    }

    /** Same, four weight rows per pass sharing the x loads. */
    @Benchmark
    public float[] bf16Perm4() {
        if (xperm == null) bf16Perm();
        for (int j = 0; j < out; j += 4) dotPerm4(xperm, bfm, 2L * j * in, in, y, j);
        return y;
    }

    static float dotPerm(float[] x, MemorySegment w, long wo, int in) {
        FloatVector a0 = FloatVector.zero(F), a1 = a0;
        for (int k = 0; k < in; k += 32) {
            IntVector v = IntVector.fromMemorySegment(I512, w, wo + 2L * k, LE);
            a0 = FloatVector.fromArray(F, x, k).fma(v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0);
            a1 = FloatVector.fromArray(F, x, k + 16).fma(v.and(0xffff0000).reinterpretAsFloats(), a1);
        }
        return a0.add(a1).reduceLanes(VectorOperators.ADD);
    }

    static void dotPerm4(float[] x, MemorySegment w, long wo, int in, float[] y, int j) {
        long r = 2L * in;
        FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
        for (int k = 0; k < in; k += 32) {
            FloatVector xe = FloatVector.fromArray(F, x, k), xo = FloatVector.fromArray(F, x, k + 16);
            long o = wo + 2L * k;
            IntVector v0 = IntVector.fromMemorySegment(I512, w, o, LE), v1 = IntVector.fromMemorySegment(I512, w, o + r, LE);
            IntVector v2 = IntVector.fromMemorySegment(I512, w, o + 2 * r, LE), v3 = IntVector.fromMemorySegment(I512, w, o + 3 * r, LE);
            a0 = xo.fma(v0.and(0xffff0000).reinterpretAsFloats(), xe.fma(v0.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a0));
            a1 = xo.fma(v1.and(0xffff0000).reinterpretAsFloats(), xe.fma(v1.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a1));
            a2 = xo.fma(v2.and(0xffff0000).reinterpretAsFloats(), xe.fma(v2.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a2));
            a3 = xo.fma(v3.and(0xffff0000).reinterpretAsFloats(), xe.fma(v3.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats(), a3));
        }
        y[j] = a0.reduceLanes(VectorOperators.ADD); y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
        y[j + 2] = a2.reduceLanes(VectorOperators.ADD); y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
    }
}
