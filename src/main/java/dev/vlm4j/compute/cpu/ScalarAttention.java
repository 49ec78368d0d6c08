package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;

/**
 * Scalar reference attention (the fallback when the Vector API is unavailable, and the tests' reference): per (query, head), scores over the allowed keys, a max-subtracted softmax in float32
 * and the weighted sum of values. Segments (ViT windows, packed sequences) and causality come from the mask.
 */
final class ScalarAttention {
    private ScalarAttention() {}

    static dev.vlm4j.tensor.Tensor compute(float[] q, int n, float[] k, float[] v, int kvLen, int hq, int hkv, int d,
                                           AttentionMask mask) {
        float[] out = new float[n * hq * d];
        int group = hq / hkv;
        float scale = (float) (1.0 / Math.sqrt(d));
        final int[] so = mask.querySegments(n, kvLen);
        Parallel.forRange(n * hq, 4, (t0, t1) -> {
            float[] scores = new float[kvLen];
            for (int t = t0; t < t1; t++) {
                int i = t / hq, h = t % hq, kh = h / group;
                int lo = mask.keyStart(i, so), hi = mask.keyEnd(i, so, kvLen);
                int qo = i * hq * d + h * d;
                float max = Float.NEGATIVE_INFINITY;
                for (int j = lo; j < hi; j++) {
                    int ko = j * hkv * d + kh * d;
                    float s = 0;
                    for (int c = 0; c < d; c++) s += q[qo + c] * k[ko + c];
                    s *= scale;
                    scores[j] = s;
                    if (s > max) max = s;
                }
                float sum = 0;
                for (int j = lo; j < hi; j++) {
                    float e = (float) Math.exp(scores[j] - max);
                    scores[j] = e;
                    sum += e;
                }
                float inv = 1f / sum;
                int oo = i * hq * d + h * d;
                for (int j = lo; j < hi; j++) {
                    float p = scores[j] * inv;
                    int vo = j * hkv * d + kh * d;
                    for (int c = 0; c < d; c++) out[oo + c] += p * v[vo + c];
                }
            }
        });
        return dev.vlm4j.tensor.Tensor.of(out, n, (long) hq * d);
    }
}
