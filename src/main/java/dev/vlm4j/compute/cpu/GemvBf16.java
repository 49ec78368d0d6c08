package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;

import static dev.vlm4j.compute.cpu.MatMul.bf16;
import static dev.vlm4j.compute.cpu.MatMul.bf16At;

/**
 * {@code y = x W^T} for a few activation rows (decode, batched decode, short prompts: below 64 rows unless
 * {@code vlm4j.gemmMinRows} says otherwise) and bf16 weights, streaming the weights once whatever the number of rows.
 * <p>
 * Each worker walks its output rows in tiles of about {@link #TILE_BYTES} of weights; over a tile, register-blocked
 * kernels take 8 (AVX-512) or 4 activation rows against 2 weight rows at a time, so each weight vector is loaded and
 * widened once for 8 or 4 FMAs; leftover activation rows run against 4 weight rows at a time.
 * <p>
 * Every {@code y[r, j]} is computed by the same operations in the same order whichever kernel or batch size: one
 * vector accumulator over the row's whole vectors in k order, then a pairwise tree over its lanes (lane l + l + L/2,
 * then + L/4, ..., + 1), then the {@code in % L} leftover products added in order. A sequence's logits therefore do
 * not depend on the batch it is decoded in. The trees of several accumulators are folded together (blend + one
 * permute per pair), several times cheaper than one {@code reduceLanes}, which C2 evaluates lane by lane in order;
 * this matters for narrow rows, e.g. an LM head over a 256-wide hidden state.
 */
final class GemvBf16 {
    private static final VectorSpecies<Float> F = MatMul.F;
    private static final int L = F.length();
    /** 16 accumulators and their operands fit the 32 vector registers of AVX-512. */
    private static final boolean WIDE = L >= 16;
    private static final int TILE_BYTES = 64 << 10;
    /** Level v of the lane tree pairs lane l with l ^ (L >> (v + 1)): M[v] marks the upper lanes, S[v] swaps them. */
    private static final VectorMask<Float> M0 = mask(0), M1 = mask(1), M2 = mask(2);
    private static final VectorShuffle<Float> S0 = swap(0), S1 = swap(1), S2 = swap(2), S3 = swap(3);

    private GemvBf16() {}

    /** Single activation rows go to the native kernel where it runs (same sums); tests and probes switch it. */
    static volatile boolean nativeRows = NativeKernels.bf16Available();

    private static VectorMask<Float> mask(int level) {
        int h = L >> (level + 1);
        if (h == 0) return null;
        boolean[] upper = new boolean[L];
        for (int l = 0; l < L; l++) upper[l] = (l & h) != 0;
        return VectorMask.fromArray(F, upper, 0);
    }

    private static VectorShuffle<Float> swap(int level) {
        int h = L >> (level + 1);
        return h == 0 ? null : VectorShuffle.fromOp(F, l -> l ^ h);
    }

    /** Lanes holding the sums of accumulators 0..7 after folding 2, 4 or 8 accumulators into one vector. */
    private static final int A1 = L >> 1, A2 = L >> 2, A3 = A1 + A2, A4 = L >> 3, A5 = A1 + A4, A6 = A2 + A4, A7 = A3 + A4;

    static void linear(float[] x, int n, int in, MemorySegment w, int out, float[] y) {
        int kv = in - in % L, tile = Math.max(4, (TILE_BYTES / (2 * in)) & ~3);
        Parallel.forRangeGuided((out + 3) / 4, 4, (b0, b1) -> {
            float[] sums = new float[2 * L];
            int j0 = 4 * b0, j1 = Math.min(out, 4 * b1), whole = j0 + ((j1 - j0) & ~3);
            for (int t0 = j0; t0 < whole; t0 += tile) {
                int t1 = Math.min(whole, t0 + tile), r = 0;
                if (WIDE) for (; r + 8 <= n; r += 8) rows8x2(x, r * in, in, kv, w, y, r * out, out, t0, t1, sums);
                for (; r + 4 <= n; r += 4) rows4x2(x, r * in, in, kv, w, y, r * out, out, t0, t1, sums);
                if (nativeRows && w.isNative())
                    for (; r < n; r++) NativeKernels.bf16Rows(x, r * in, kv, w.address() + 2L * t0 * in, in, t1 - t0, y, r * out + t0);
                for (; r < n; r++) rows1x4(x, r * in, in, kv, w, y, r * out, t0, t1, sums);
            }
            for (int j = whole; j < j1; j++) for (int r = 0; r < n; r++) rows1x1(x, r * in, kv, w, 2L * j * in, y, r * out + j);
            if (kv < in) // the leftover products, in order, after the vector part
                for (int j = j0; j < j1; j++)
                    for (int r = 0; r < n; r++) {
                        float s = y[r * out + j];
                        for (int k = kv; k < in; k++) s += x[r * in + k] * bf16At(w, 2L * ((long) j * in + k));
                        y[r * out + j] = s;
                    }
        });
    }

    /** y[yo] = the vector part of x[xo..] . w[row at wOff]. */
    private static void rows1x1(float[] x, int xo, int kv, MemorySegment w, long wOff, float[] y, int yo) {
        FloatVector a = FloatVector.zero(F);
        for (int k = 0; k < kv; k += L) a = FloatVector.fromArray(F, x, xo + k).fma(bf16(w, wOff + 2L * k), a);
        a = a.add(a.rearrange(S0));
        a = a.add(a.rearrange(S1));
        if (L >= 8) a = a.add(a.rearrange(S2));
        if (L >= 16) a = a.add(a.rearrange(S3));
        y[yo] = a.lane(0);
    }

    /** One activation row (at xo; its outputs at yo) against weight rows [j0, j1), 4 at a time. */
    private static void rows1x4(float[] x, int xo, int in, int kv, MemorySegment w, float[] y, int yo, int j0, int j1, float[] sums) {
        long rb = 2L * in;
        for (int j = j0; j < j1; j += 4) {
            long wOff = j * rb;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0;
            for (int k = 0; k < kv; k += L) {
                FloatVector xv = FloatVector.fromArray(F, x, xo + k);
                long o = wOff + 2L * k;
                a0 = xv.fma(bf16(w, o), a0);
                a1 = xv.fma(bf16(w, o + rb), a1);
                a2 = xv.fma(bf16(w, o + 2 * rb), a2);
                a3 = xv.fma(bf16(w, o + 3 * rb), a3);
            }
            a0 = a0.blend(a1, M0).add(a1.blend(a0, M0).rearrange(S0));
            a2 = a2.blend(a3, M0).add(a3.blend(a2, M0).rearrange(S0));
            a0 = a0.blend(a2, M1).add(a2.blend(a0, M1).rearrange(S1));
            if (L >= 8) a0 = a0.add(a0.rearrange(S2));
            if (L >= 16) a0 = a0.add(a0.rearrange(S3));
            a0.intoArray(sums, 0);
            int p = yo + j;
            y[p] = sums[0]; y[p + 1] = sums[A1]; y[p + 2] = sums[A2]; y[p + 3] = sums[A3];
        }
    }

    /** Four activation rows against weight rows [j0, j1), 2 at a time. */
    private static void rows4x2(float[] x, int xo, int in, int kv, MemorySegment w, float[] y, int yo, int out, int j0, int j1, float[] sums) {
        long rb = 2L * in;
        for (int j = j0; j < j1; j += 2) {
            long wOff = j * rb;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, b0 = a0, b1 = a0, b2 = a0, b3 = a0;
            for (int k = 0; k < kv; k += L) {
                FloatVector wa = bf16(w, wOff + 2L * k), wb = bf16(w, wOff + rb + 2L * k);
                int o = xo + k;
                FloatVector xv = FloatVector.fromArray(F, x, o);
                a0 = xv.fma(wa, a0); b0 = xv.fma(wb, b0);
                xv = FloatVector.fromArray(F, x, o + in);
                a1 = xv.fma(wa, a1); b1 = xv.fma(wb, b1);
                xv = FloatVector.fromArray(F, x, o + 2 * in);
                a2 = xv.fma(wa, a2); b2 = xv.fma(wb, b2);
                xv = FloatVector.fromArray(F, x, o + 3 * in);
                a3 = xv.fma(wa, a3); b3 = xv.fma(wb, b3);
            }
            a0 = a0.blend(a1, M0).add(a1.blend(a0, M0).rearrange(S0));
            a2 = a2.blend(a3, M0).add(a3.blend(a2, M0).rearrange(S0));
            a0 = a0.blend(a2, M1).add(a2.blend(a0, M1).rearrange(S1));
            if (L >= 8) a0 = a0.add(a0.rearrange(S2));
            if (L >= 16) a0 = a0.add(a0.rearrange(S3));
            a0.intoArray(sums, 0);
            b0 = b0.blend(b1, M0).add(b1.blend(b0, M0).rearrange(S0));
            b2 = b2.blend(b3, M0).add(b3.blend(b2, M0).rearrange(S0));
            b0 = b0.blend(b2, M1).add(b2.blend(b0, M1).rearrange(S1));
            if (L >= 8) b0 = b0.add(b0.rearrange(S2));
            if (L >= 16) b0 = b0.add(b0.rearrange(S3));
            b0.intoArray(sums, L);
            int p = yo + j;
            y[p] = sums[0]; y[p + 1] = sums[L];
            y[p += out] = sums[A1]; y[p + 1] = sums[L + A1];
            y[p += out] = sums[A2]; y[p + 1] = sums[L + A2];
            y[p += out] = sums[A3]; y[p + 1] = sums[L + A3];
        }
    }

    /** Eight activation rows against weight rows [j0, j1), 2 at a time (16 accumulators: AVX-512 only). */
    private static void rows8x2(float[] x, int xo, int in, int kv, MemorySegment w, float[] y, int yo, int out, int j0, int j1, float[] sums) {
        long rb = 2L * in;
        for (int j = j0; j < j1; j += 2) {
            long wOff = j * rb;
            FloatVector a0 = FloatVector.zero(F), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
            FloatVector b0 = a0, b1 = a0, b2 = a0, b3 = a0, b4 = a0, b5 = a0, b6 = a0, b7 = a0;
            for (int k = 0; k < kv; k += L) {
                FloatVector wa = bf16(w, wOff + 2L * k), wb = bf16(w, wOff + rb + 2L * k);
                int o = xo + k;
                FloatVector xv = FloatVector.fromArray(F, x, o);
                a0 = xv.fma(wa, a0); b0 = xv.fma(wb, b0);
                xv = FloatVector.fromArray(F, x, o + in);
                a1 = xv.fma(wa, a1); b1 = xv.fma(wb, b1);
                xv = FloatVector.fromArray(F, x, o + 2 * in);
                a2 = xv.fma(wa, a2); b2 = xv.fma(wb, b2);
                xv = FloatVector.fromArray(F, x, o + 3 * in);
                a3 = xv.fma(wa, a3); b3 = xv.fma(wb, b3);
                xv = FloatVector.fromArray(F, x, o + 4 * in);
                a4 = xv.fma(wa, a4); b4 = xv.fma(wb, b4);
                xv = FloatVector.fromArray(F, x, o + 5 * in);
                a5 = xv.fma(wa, a5); b5 = xv.fma(wb, b5);
                xv = FloatVector.fromArray(F, x, o + 6 * in);
                a6 = xv.fma(wa, a6); b6 = xv.fma(wb, b6);
                xv = FloatVector.fromArray(F, x, o + 7 * in);
                a7 = xv.fma(wa, a7); b7 = xv.fma(wb, b7);
            }
            a0 = a0.blend(a1, M0).add(a1.blend(a0, M0).rearrange(S0));
            a2 = a2.blend(a3, M0).add(a3.blend(a2, M0).rearrange(S0));
            a4 = a4.blend(a5, M0).add(a5.blend(a4, M0).rearrange(S0));
            a6 = a6.blend(a7, M0).add(a7.blend(a6, M0).rearrange(S0));
            a0 = a0.blend(a2, M1).add(a2.blend(a0, M1).rearrange(S1));
            a4 = a4.blend(a6, M1).add(a6.blend(a4, M1).rearrange(S1));
            a0 = a0.blend(a4, M2).add(a4.blend(a0, M2).rearrange(S2));
            a0 = a0.add(a0.rearrange(S3));
            a0.intoArray(sums, 0);
            b0 = b0.blend(b1, M0).add(b1.blend(b0, M0).rearrange(S0));
            b2 = b2.blend(b3, M0).add(b3.blend(b2, M0).rearrange(S0));
            b4 = b4.blend(b5, M0).add(b5.blend(b4, M0).rearrange(S0));
            b6 = b6.blend(b7, M0).add(b7.blend(b6, M0).rearrange(S0));
            b0 = b0.blend(b2, M1).add(b2.blend(b0, M1).rearrange(S1));
            b4 = b4.blend(b6, M1).add(b6.blend(b4, M1).rearrange(S1));
            b0 = b0.blend(b4, M2).add(b4.blend(b0, M2).rearrange(S2));
            b0 = b0.add(b0.rearrange(S3));
            b0.intoArray(sums, L);
            int p = yo + j;
            y[p] = sums[0]; y[p + 1] = sums[L];
            y[p += out] = sums[A1]; y[p + 1] = sums[L + A1];
            y[p += out] = sums[A2]; y[p + 1] = sums[L + A2];
            y[p += out] = sums[A3]; y[p + 1] = sums[L + A3];
            y[p += out] = sums[A4]; y[p + 1] = sums[L + A4];
            y[p += out] = sums[A5]; y[p + 1] = sums[L + A5];
            y[p += out] = sums[A6]; y[p + 1] = sums[L + A6];
            y[p += out] = sums[A7]; y[p + 1] = sums[L + A7];
        }
    }
}
