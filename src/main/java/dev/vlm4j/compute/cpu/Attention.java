package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector API attention that never materialises a score matrix: keys are first transposed per KV head
 * ({@code kt[kh][c][j]}), so a tile of {@code lanes} keys is scored with {@code d} broadcast FMAs and no horizontal
 * reductions; each query then runs an online (streaming) softmax over its allowed key range, tile by tile,
 * rescaling its float32 accumulator when the running maximum grows. Memory per worker is O(d). Segments (ViT
 * windows, images) and causality come from the mask, exactly as in {@link ScalarAttention}.
 */
final class Attention {
    private static final VectorSpecies<Float> F = MatMul.F;
    private static final int L = F.length();

    private Attention() {}

    static Tensor compute(float[] q, int n, float[] k, float[] v, int kvLen, int hq, int hkv, int d, AttentionMask mask) {
        float[] out = new float[n * hq * d];
        int group = hq / hkv, w = hkv * d;
        float scale = (float) (1.0 / Math.sqrt(d));
        int[] seg = mask.segments();
        int[] segOf = null;
        if (seg != null) {
            if (seg[seg.length - 1] != n || kvLen != n)
                throw new IllegalArgumentException("attention segments end at " + seg[seg.length - 1] + " but there are " + n + " queries");
            segOf = new int[n];
            for (int s = 0; s + 1 < seg.length; s++) for (int i = seg[s]; i < seg[s + 1]; i++) segOf[i] = s;
        }
        // Transposed keys, each row padded so a tile may read past kvLen (those lanes are masked).
        int ld = (kvLen + L - 1) / L * L + L;
        float[] kt = new float[hkv * d * ld];
        Parallel.forRange(hkv, 1, (h0, h1) -> {
            for (int kh = h0; kh < h1; kh++)
                for (int j = 0; j < kvLen; j++) {
                    int src = j * w + kh * d, dst = kh * d * ld + j;
                    for (int c = 0; c < d; c++) kt[dst + c * ld] = k[src + c];
                }
        });
        final int[] so = segOf;
        Parallel.forRange(n * hq, 4, (t0, t1) -> {
            float[] acc = new float[d], qs = new float[d], pb = new float[L];
            for (int t = t0; t < t1; t++) {
                int i = t / hq, h = t % hq, kh = h / group;
                int lo, hi;
                if (so != null) {
                    lo = seg[so[i]];
                    hi = seg[so[i] + 1];
                    if (mask.causal()) hi = i + 1;
                } else {
                    lo = 0;
                    hi = mask.causal() ? Math.min(kvLen, mask.queryOffset() + i + 1) : kvLen;
                }
                int qo = i * hq * d + h * d;
                for (int c = 0; c < d; c++) qs[c] = q[qo + c] * scale;
                java.util.Arrays.fill(acc, 0f);
                float m = Float.NEGATIVE_INFINITY, l = 0;
                int base = kh * d * ld, vh = kh * d;
                for (int j0 = lo; j0 < hi; j0 += L) {
                    FloatVector s = FloatVector.zero(F);
                    for (int c = 0; c < d; c++) s = FloatVector.fromArray(F, kt, base + c * ld + j0).fma(FloatVector.broadcast(F, qs[c]), s);
                    int valid = Math.min(L, hi - j0);
                    if (valid < L) {
                        VectorMask<Float> in = F.indexInRange(0, valid);
                        s = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY).blend(s, in);
                    }
                    float tmax = s.reduceLanes(VectorOperators.MAX);
                    if (tmax > m) {
                        if (m != Float.NEGATIVE_INFINITY) {
                            float corr = (float) Math.exp(m - tmax);
                            l *= corr;
                            for (int c = 0; c < d; c++) acc[c] *= corr;
                        }
                        m = tmax;
                    }
                    FloatVector p = s.sub(m).lanewise(VectorOperators.EXP);
                    l += p.reduceLanes(VectorOperators.ADD);
                    p.intoArray(pb, 0);
                    int c0 = 0;
                    for (; c0 <= d - L; c0 += L) {
                        FloatVector a = FloatVector.fromArray(F, acc, c0);
                        for (int tt = 0; tt < valid; tt++)
                            a = FloatVector.fromArray(F, v, (j0 + tt) * w + vh + c0).fma(FloatVector.broadcast(F, pb[tt]), a);
                        a.intoArray(acc, c0);
                    }
                    for (; c0 < d; c0++) {
                        float a = acc[c0];
                        for (int tt = 0; tt < valid; tt++) a += pb[tt] * v[(j0 + tt) * w + vh + c0];
                        acc[c0] = a;
                    }
                }
                float inv = 1f / l;
                for (int c = 0; c < d; c++) out[qo + c] = acc[c] * inv;
            }
        });
        return Tensor.of(out, n, (long) hq * d);
    }
}
