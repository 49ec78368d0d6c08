package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.*;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Experimental matrix-vector kernels for GemvRace (DRAM regime): layouts and touch-ahead. */
final class GemvLab {
    static final VectorSpecies<Float> F = FloatVector.SPECIES_512;
    static final VectorSpecies<Byte> B = ByteVector.SPECIES_128;
    static final VectorSpecies<Short> S = ShortVector.SPECIES_256;
    static final VectorSpecies<Integer> I = IntVector.SPECIES_512;
    static final ByteOrder LE = ByteOrder.LITTLE_ENDIAN;
    static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(LE);
    static final ValueLayout.OfByte I8 = ValueLayout.JAVA_BYTE;
    static int sink;

    static FloatVector q8(MemorySegment w, long off) {
        return (FloatVector) ByteVector.fromMemorySegment(B, w, off, LE).convertShape(VectorOperators.B2F, F, 0);
    }

    /** Row-interleaved Q8_0: row j = nb * 32 quant bytes then nb f16 scales (stride rb = nb * 34). */
    static void q8il(float[] x, MemorySegment w, int nb, int out, float[] y, int dist) {
        long rb = nb * 34L;
        Parallel.forRange(out / 4, 4, (g0, g1) -> {
            float[] sc = new float[4 * nb];
            int t = 0;
            for (int g = g0; g < g1; g++) {
                long q0 = g * 4 * rb, q1 = q0 + rb, q2 = q1 + rb, q3 = q2 + rb;
                for (int r = 0; r < 4; r++)
                    for (int b = 0; b < nb; b++) sc[r * nb + b] = Float.float16ToFloat(w.get(I16, q0 + r * rb + nb * 32L + 2L * b));
                FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
                long end = w.byteSize() - 1;
                for (int b = 0; b < nb; b++) {
                    int xb = b * 32;
                    long o = (long) b * 32;
                    if (dist > 0 && (b & 1) == 0) {
                        long p = q0 + 4 * o + dist; // touch ahead, one line per two blocks of the group's span
                        t += w.get(I8, Math.min(p, end)) + w.get(I8, Math.min(p + 64, end));
                    }
                    FloatVector xl = FloatVector.fromArray(F, x, xb), xh = FloatVector.fromArray(F, x, xb + 16);
                    a0 = xh.fma(q8(w, q0 + o + 16), xl.mul(q8(w, q0 + o))).fma(FloatVector.broadcast(F, sc[b]), a0);
                    a1 = xh.fma(q8(w, q1 + o + 16), xl.mul(q8(w, q1 + o))).fma(FloatVector.broadcast(F, sc[nb + b]), a1);
                    a2 = xh.fma(q8(w, q2 + o + 16), xl.mul(q8(w, q2 + o))).fma(FloatVector.broadcast(F, sc[2 * nb + b]), a2);
                    a3 = xh.fma(q8(w, q3 + o + 16), xl.mul(q8(w, q3 + o))).fma(FloatVector.broadcast(F, sc[3 * nb + b]), a3);
                }
                int j = g * 4;
                y[j] = a0.reduceLanes(VectorOperators.ADD);
                y[j + 1] = a1.reduceLanes(VectorOperators.ADD);
                y[j + 2] = a2.reduceLanes(VectorOperators.ADD);
                y[j + 3] = a3.reduceLanes(VectorOperators.ADD);
            }
            sink += t;
        });
    }

    static FloatVector bf(MemorySegment w, long off) {
        ShortVector s = ShortVector.fromMemorySegment(S, w, off, LE);
        return ((IntVector) s.convertShape(VectorOperators.S2I, I, 0)).lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    /** bf16, one row at a time, with touch-ahead of dist bytes. */
    static void bf16(float[] x, MemorySegment w, int in, int out, float[] y, int dist) {
        long end = w.byteSize() - 1;
        Parallel.forRange(out, 16, (j0, j1) -> {
            int t = 0;
            for (int j = j0; j < j1; j++) {
                long wo = 2L * j * in;
                FloatVector a0 = FloatVector.zero(F), a1 = a0;
                for (int k = 0; k < in; k += 32) {
                    if (dist > 0) t += w.get(I8, Math.min(wo + 2L * k + dist, end));
                    a0 = FloatVector.fromArray(F, x, k).fma(bf(w, wo + 2L * k), a0);
                    a1 = FloatVector.fromArray(F, x, k + 16).fma(bf(w, wo + 2L * k + 32), a1);
                }
                y[j] = a0.add(a1).reduceLanes(VectorOperators.ADD);
            }
            sink += t;
        });
    }

    /** Light streaming kernels over a segment: "f" float loads + adds (as the bandwidth test); "b" int8 to float + adds. */
    static float stream(MemorySegment w, boolean bytes) { return stream(w, bytes, 0); }

    static float stream(MemorySegment w, boolean bytes, int dist) {
        long n = w.byteSize() / 1024 * 1024;
        int parts = Parallel.threads() * 8;
        long per = n / parts / 256 * 256;
        float[] s = new float[parts];
        Parallel.forRange(parts, 1, (a, b) -> {
            for (int p = a; p < b; p++) {
                FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                long o = p * per, end = o + per;
                int t = 0;
                if (bytes && dist > 0) {
                    for (; o + 64 <= end; o += 64) {
                        t += w.get(I8, Math.min(o + dist, w.byteSize() - 1));
                        s0 = s0.add(q8(w, o)); s1 = s1.add(q8(w, o + 16)); s2 = s2.add(q8(w, o + 32)); s3 = s3.add(q8(w, o + 48));
                    }
                } else if (bytes) {
                    for (; o + 64 <= end; o += 64) {
                        s0 = s0.add(q8(w, o)); s1 = s1.add(q8(w, o + 16)); s2 = s2.add(q8(w, o + 32)); s3 = s3.add(q8(w, o + 48));
                    }
                } else {
                    for (; o + 256 <= end; o += 256) {
                        s0 = s0.add(FloatVector.fromMemorySegment(F, w, o, LE)); s1 = s1.add(FloatVector.fromMemorySegment(F, w, o + 64, LE));
                        s2 = s2.add(FloatVector.fromMemorySegment(F, w, o + 128, LE)); s3 = s3.add(FloatVector.fromMemorySegment(F, w, o + 192, LE));
                    }
                }
                s[p] = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD) + t;
            }
        });
        return s[0];
    }

    /** As stream(bytes), with one 64-byte load per line and the int8 lanes extracted by shifts and masks. */
    static float streamWide(MemorySegment w) { return streamWide(w, 0); }

    static float streamWide(MemorySegment w, int dist) {
        long n = w.byteSize() / 1024 * 1024;
        int parts = Parallel.threads() * 8;
        long per = n / parts / 256 * 256;
        float[] s = new float[parts];
        Parallel.forRange(parts, 1, (a, b) -> {
            for (int p = a; p < b; p++) {
                FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                long o = p * per, end = o + per;
                int t = 0;
                long tend = Math.min(end, w.byteSize() - dist - 1);
                for (; o + 64 <= end; o += 64) {
                    if (dist > 0 && o < tend) t += w.get(I8, o + dist);
                    IntVector v = IntVector.fromMemorySegment(I, w, o, LE);
                    s0 = s0.add((FloatVector) v.lanewise(VectorOperators.LSHL, 24).convert(VectorOperators.I2F, 0));
                    s1 = s1.add((FloatVector) v.lanewise(VectorOperators.LSHL, 16).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s2 = s2.add((FloatVector) v.lanewise(VectorOperators.LSHL, 8).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s3 = s3.add((FloatVector) v.and(0xff000000).convert(VectorOperators.I2F, 0));
                }
                s[p] = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD) + t;
            }
        });
        return s[0];
    }

    /** streamWide over two distant halves of each part at once (two prefetch streams per worker). */
    static float streamWide2(MemorySegment w) {
        long n = w.byteSize() / 1024 * 1024;
        int parts = Parallel.threads() * 8;
        long per = n / parts / 256 * 256, half = per / 2 / 64 * 64;
        float[] s = new float[parts];
        Parallel.forRange(parts, 1, (a, b) -> {
            for (int p = a; p < b; p++) {
                FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                long o = p * per, end = o + half;
                for (; o + 64 <= end; o += 64) {
                    IntVector v = IntVector.fromMemorySegment(I, w, o, LE);
                    IntVector u = IntVector.fromMemorySegment(I, w, o + half, LE);
                    s0 = s0.add((FloatVector) v.lanewise(VectorOperators.LSHL, 24).convert(VectorOperators.I2F, 0));
                    s1 = s1.add((FloatVector) v.lanewise(VectorOperators.LSHL, 16).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s2 = s2.add((FloatVector) v.lanewise(VectorOperators.LSHL, 8).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s3 = s3.add((FloatVector) v.and(0xff000000).convert(VectorOperators.I2F, 0));
                    s0 = s0.add((FloatVector) u.lanewise(VectorOperators.LSHL, 24).convert(VectorOperators.I2F, 0));
                    s1 = s1.add((FloatVector) u.lanewise(VectorOperators.LSHL, 16).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s2 = s2.add((FloatVector) u.lanewise(VectorOperators.LSHL, 8).and(0xff000000).convert(VectorOperators.I2F, 0));
                    s3 = s3.add((FloatVector) u.and(0xff000000).convert(VectorOperators.I2F, 0));
                }
                s[p] = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD);
            }
        });
        return s[0];
    }
}
