package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
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

    /** (query, head) pairs processed together by the Vector API kernel. */
    private static final int G = 4;
    /**
     * The C kernel ({@link NativeKernels#attention}: 8 queries, 32-key tiles) where the native library is loaded and
     * the head dimension is a multiple of 16 up to 256; {@code -Dvlm4j.attention.native=false} keeps the Vector API one.
     */
    static final boolean NATIVE = NativeKernels.attentionAvailable() && L == 16
            && !"false".equals(System.getProperty("vlm4j.attention.native"));

    /** The calling thread's transposed-key buffer for the C kernel (reused across calls). */
    private static final ThreadLocal<float[]> KEYS_T = ThreadLocal.withInitial(() -> new float[0]);

    /**
     * A decode key cache kept transposed beside it: columns [0, valid) of {@code kt} hold rows [0, valid) of the key
     * array. Writes into the array through the backend ({@link #keysWritten}) lower {@code valid}; a decode step then
     * transposes only the rows from there (one per step) instead of the whole cache. It costs a second copy of the key
     * cache (half the KV cache's memory again; a 7B model at 4096 tokens: 235 MB).
     */
    private static final class TransposedKeys {
        final float[] kt;
        final int ld;
        int valid;

        TransposedKeys(int size, int ld) {
            this.kt = new float[size];
            this.ld = ld;
        }
    }

    /** Keys from which a decode step's attention items run on several threads ({@code -Dvlm4j.attention.parallelKeys}). */
    static final int PARALLEL_DECODE_KEYS = Integer.getInteger("vlm4j.attention.parallelKeys", 512);

    /** By key array (identity; weak, so an entry goes with its cache). */
    private static final java.util.Map<float[], TransposedKeys> TRANSPOSED =
            java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());
    /** Whether decode steps keep their keys transposed ({@code -Dvlm4j.attention.keysCache=false}: transpose per step). */
    static final boolean KEYS_CACHE = !"false".equals(System.getProperty("vlm4j.attention.keysCache"));

    /** The kept transposition of a decode key cache, brought up to row kvLen (rows written since transposed now). */
    private static TransposedKeys decodeKeys(float[] k, int kvLen, int w, int hkv, int d) {
        int cap = k.length / w, ldc = (cap + 15) / 16 * 16 + 32;
        TransposedKeys t = TRANSPOSED.computeIfAbsent(k, a -> new TransposedKeys(hkv * d * ldc, ldc));
        if (t.kt.length != hkv * d * t.ld) throw new IllegalStateException("a key cache read with another head layout");
        synchronized (t) {
            int from = Math.min(t.valid, kvLen);
            if (from < kvLen)
                for (int kh = 0; kh < hkv; kh++)
                    NativeKernels.transposeRows(k, from * w + kh * d, kvLen - from, w, d, t.kt, kh * d * t.ld + from, t.ld);
            t.valid = Math.max(t.valid, kvLen);
        }
        return t;
    }

    /** Rows from {@code fromRow} of {@code keys} were (over)written: their kept transposition is stale. */
    static void keysWritten(float[] keys, int fromRow) {
        TransposedKeys t = TRANSPOSED.get(keys);
        if (t != null) synchronized (t) { t.valid = Math.min(t.valid, Math.max(0, fromRow)); }
    }

    private Attention() {}

    /** Online softmax attention of G queries over keys [lo, hi) of one KV head. */
    private static void block(float[] kt, int base, int ld, float[] v, int w, int vh, int d, int lo, int hi,
                              float[][] qs, float[][] acc, float[][] pb, float[] m, float[] l) {
        float[] q0 = qs[0], q1 = qs[1], q2 = qs[2], q3 = qs[3];
        for (int j0 = lo; j0 < hi; j0 += L) {
            FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0, u0 = s0, u1 = s0, u2 = s0, u3 = s0;
            int c = 0;
            for (; c + 1 < d; c += 2) {
                FloatVector k0 = FloatVector.fromArray(F, kt, base + c * ld + j0), k1 = FloatVector.fromArray(F, kt, base + (c + 1) * ld + j0);
                s0 = k0.fma(FloatVector.broadcast(F, q0[c]), s0); u0 = k1.fma(FloatVector.broadcast(F, q0[c + 1]), u0);
                s1 = k0.fma(FloatVector.broadcast(F, q1[c]), s1); u1 = k1.fma(FloatVector.broadcast(F, q1[c + 1]), u1);
                s2 = k0.fma(FloatVector.broadcast(F, q2[c]), s2); u2 = k1.fma(FloatVector.broadcast(F, q2[c + 1]), u2);
                s3 = k0.fma(FloatVector.broadcast(F, q3[c]), s3); u3 = k1.fma(FloatVector.broadcast(F, q3[c + 1]), u3);
            }
            if (c < d) {
                FloatVector k0 = FloatVector.fromArray(F, kt, base + c * ld + j0);
                s0 = k0.fma(FloatVector.broadcast(F, q0[c]), s0);
                s1 = k0.fma(FloatVector.broadcast(F, q1[c]), s1);
                s2 = k0.fma(FloatVector.broadcast(F, q2[c]), s2);
                s3 = k0.fma(FloatVector.broadcast(F, q3[c]), s3);
            }
            int valid = Math.min(L, hi - j0);
            softmaxStep(s0.add(u0), valid, 0, acc, pb, m, l);
            softmaxStep(s1.add(u1), valid, 1, acc, pb, m, l);
            softmaxStep(s2.add(u2), valid, 2, acc, pb, m, l);
            softmaxStep(s3.add(u3), valid, 3, acc, pb, m, l);
            float[] p0 = pb[0], p1 = pb[1], p2 = pb[2], p3 = pb[3];
            float[] a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
            int c0 = 0;
            for (; c0 <= d - L; c0 += L) {
                FloatVector r0 = FloatVector.fromArray(F, a0, c0), r1 = FloatVector.fromArray(F, a1, c0);
                FloatVector r2 = FloatVector.fromArray(F, a2, c0), r3 = FloatVector.fromArray(F, a3, c0);
                for (int tt = 0; tt < valid; tt++) {
                    FloatVector vv = FloatVector.fromArray(F, v, (j0 + tt) * w + vh + c0);
                    r0 = vv.fma(FloatVector.broadcast(F, p0[tt]), r0);
                    r1 = vv.fma(FloatVector.broadcast(F, p1[tt]), r1);
                    r2 = vv.fma(FloatVector.broadcast(F, p2[tt]), r2);
                    r3 = vv.fma(FloatVector.broadcast(F, p3[tt]), r3);
                }
                r0.intoArray(a0, c0); r1.intoArray(a1, c0); r2.intoArray(a2, c0); r3.intoArray(a3, c0);
            }
            for (; c0 < d; c0++)
                for (int tt = 0; tt < valid; tt++) {
                    float vv = v[(j0 + tt) * w + vh + c0];
                    a0[c0] += p0[tt] * vv; a1[c0] += p1[tt] * vv; a2[c0] += p2[tt] * vv; a3[c0] += p3[tt] * vv;
                }
        }
    }

    /** Folds one tile of scores into query e's running max / sum / accumulator; leaves the tile's weights in pb[e]. */
    private static void softmaxStep(FloatVector s, int valid, int e, float[][] acc, float[][] pb, float[] m, float[] l) {
        if (valid < L) s = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY).blend(s, F.indexInRange(0, valid));
        float tmax = s.reduceLanes(VectorOperators.MAX);
        if (tmax > m[e]) {
            if (m[e] != Float.NEGATIVE_INFINITY) {
                float corr = (float) Math.exp(m[e] - tmax);
                l[e] *= corr;
                float[] a = acc[e];
                for (int c = 0; c < a.length; c++) a[c] *= corr;
            }
            m[e] = tmax;
        }
        FloatVector p = s.sub(m[e]).lanewise(VectorOperators.EXP);
        l[e] += p.reduceLanes(VectorOperators.ADD);
        p.intoArray(pb[e], 0);
    }

    static Tensor compute(float[] q, int n, float[] k, float[] v, int kvLen, int hq, int hkv, int d, AttentionMask mask) {
        return compute(q, n, k, v, kvLen, hq, hkv, d, mask, NATIVE);
    }

    /** As above, choosing the C kernel (where it can take this head dimension) or the Vector API one. */
    static Tensor compute(float[] q, int n, float[] k, float[] v, int kvLen, int hq, int hkv, int d, AttentionMask mask, boolean useNative) {
        boolean nat = useNative && NATIVE && d % 16 == 0 && d <= 256;
        int gq = nat ? NativeKernels.ATTENTION_QUERIES : G;
        float[] out = new float[n * hq * d];
        int group = hq / hkv, w = hkv * d;
        float scale = (float) (1.0 / Math.sqrt(d));
        int[] segOf = mask.querySegments(n, kvLen);
        // Transposed keys, each row padded so a tile may read past kvLen (those lanes are masked).
        TransposedKeys tk = nat && n == 1 && KEYS_CACHE && k.length % w == 0 ? decodeKeys(k, kvLen, w, hkv, d) : null;
        int ld = tk != null ? tk.ld : (kvLen + L - 1) / L * L + (nat ? 32 : L);
        final float[] kt;
        if (tk != null) {
            kt = tk.kt;   // a decode step: the cache's keys stay transposed between steps
        } else if (nat) {
            // in C, 16 x 16 blocks; a decode step's few keys without a parallel region, and into a reused buffer (the
            // kernel masks whatever an earlier call left past kvLen)
            kt = Parallel.scratch(KEYS_T, hkv * d * ld);
            Parallel.forRange(hkv, (long) kvLen * d < 1 << 15 ? hkv : 1, (h0, h1) -> {
                for (int kh = h0; kh < h1; kh++) NativeKernels.transposeRows(k, kh * d, kvLen, w, d, kt, kh * d * ld, ld);
            });
        } else {
            float[] t = kt = new float[hkv * d * ld];
            Parallel.forRange(hkv, 1, (h0, h1) -> {
                for (int kh = h0; kh < h1; kh++)
                    for (int j = 0; j < kvLen; j++) {
                        int src = j * w + kh * d, dst = kh * d * ld + j;
                        for (int c = 0; c < d; c++) t[dst + c * ld] = k[src + c];
                    }
            });
        }
        // Work items: up to G (query row, head) pairs that read the same KV head over the same key range, so one
        // pass over the keys serves G queries (GQA heads of a row, or neighbouring rows of a ViT segment).
        int pairs = n * hq;
        int[] pi = new int[pairs], ph = new int[pairs], lo = new int[pairs], hi = new int[pairs];
        int[] itemStart = new int[pairs + 1];
        int items = 0, idx = 0;
        for (int kh = 0; kh < hkv; kh++)
            for (int i = 0; i < n; i++) {
                int l0 = mask.keyStart(i, segOf), h0 = mask.keyEnd(i, segOf, kvLen);
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    boolean extend = idx > itemStart[items] && idx - itemStart[items] < gq && lo[idx - 1] == l0 && hi[idx - 1] == h0
                            && ph[idx - 1] / group == kh;
                    if (!extend && idx > 0) itemStart[++items] = idx;
                    pi[idx] = i; ph[idx] = h; lo[idx] = l0; hi[idx] = h0;
                    idx++;
                }
            }
        itemStart[++items] = idx;
        final int nItems = items;
        if (nat) {
            // a decode step's few items (one per KV head) go to separate threads once the keys are many
            Parallel.forRange(nItems, n == 1 && kvLen >= PARALLEL_DECODE_KEYS ? 1 : 2, (t0, t1) -> {
                float[] qs = new float[gq * d], os = new float[gq * d];
                for (int t = t0; t < t1; t++) {
                    int a = itemStart[t], g = itemStart[t + 1] - a;
                    for (int e = 0; e < gq; e++) {
                        int src = a + Math.min(e, g - 1); // pad with copies of the last pair (computed, not stored)
                        int qo = pi[src] * hq * d + ph[src] * d;
                        for (int c = 0; c < d; c++) qs[e * d + c] = q[qo + c] * scale;
                    }
                    int kh = ph[a] / group;
                    NativeKernels.attention(qs, kt, kh * d * ld, ld, v, kh * d, w, d, lo[a], hi[a], os);
                    for (int e = 0; e < g; e++) System.arraycopy(os, e * d, out, pi[a + e] * hq * d + ph[a + e] * d, d);
                }
            });
            return Tensor.of(out, n, (long) hq * d);
        }
        Parallel.forRange(nItems, 2, (t0, t1) -> {
            float[][] acc = new float[G][d], qs = new float[G][d], pb = new float[G][L];
            float[] m = new float[G], l = new float[G];
            for (int t = t0; t < t1; t++) {
                int a = itemStart[t], g = itemStart[t + 1] - a;
                for (int e = 0; e < G; e++) {
                    int src = a + Math.min(e, g - 1); // pad with copies of the last pair (computed, not stored)
                    int qo = pi[src] * hq * d + ph[src] * d;
                    for (int c = 0; c < d; c++) qs[e][c] = q[qo + c] * scale;
                    java.util.Arrays.fill(acc[e], 0f);
                }
                java.util.Arrays.fill(m, Float.NEGATIVE_INFINITY);
                java.util.Arrays.fill(l, 0f);
                int kh = ph[a] / group;
                block(kt, kh * d * ld, ld, v, w, kh * d, d, lo[a], hi[a], qs, acc, pb, m, l);
                for (int e = 0; e < g; e++) {
                    int qo = pi[a + e] * hq * d + ph[a + e] * d;
                    float inv = 1f / l[e];
                    for (int c = 0; c < d; c++) out[qo + c] = acc[e][c] * inv;
                }
            }
        });
        return Tensor.of(out, n, (long) hq * d);
    }
}
