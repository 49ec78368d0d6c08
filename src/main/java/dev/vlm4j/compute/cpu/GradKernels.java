package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;


/**
 * The backward kernels of {@link HostGradOps}, on host float32 arrays. Every method accumulates ({@code +=}) into
 * the gradient arrays it is given; null gradient arrays are skipped.
 */
final class GradKernels {
    private GradKernels() {}

    /** {@code dx[n, in] += dy[n, out] W[out, in]}. */
    static void linearDx(float[] dy, int n, int out, float[] w, int in, float[] dx) {
        // Blocks of ROWS gradient rows share each pass over W, so W (the LM head: vocab x hidden) is streamed
        // n / ROWS times instead of n times; the block of dx stays in cache. Per element the sum runs over o in
        // ascending order, as before.
        int blocks = (n + DX_ROWS - 1) / DX_ROWS;
        Parallel.forRange(blocks, 1, (b0, b1) -> {
            for (int b = b0; b < b1; b++) {
                int r0 = b * DX_ROWS, r1 = Math.min(n, r0 + DX_ROWS);
                for (int o = 0; o < out; o++) {
                    int wo = o * in;
                    for (int r = r0; r < r1; r++) {
                        float g = dy[r * out + o];
                        if (g != 0f) axpy(g, w, wo, dx, r * in, in);
                    }
                }
            }
        });
    }

    private static final int DX_ROWS = 32;
    private static final jdk.incubator.vector.VectorSpecies<Float> F = jdk.incubator.vector.FloatVector.SPECIES_PREFERRED;

    /** {@code y[yo..yo+len) += a * x[xo..xo+len)}. */
    private static void axpy(float a, float[] x, int xo, float[] y, int yo, int len) {
        int i = 0, L = F.length();
        for (; i <= len - L; i += L) {
            var xv = jdk.incubator.vector.FloatVector.fromArray(F, x, xo + i);
            jdk.incubator.vector.FloatVector.fromArray(F, y, yo + i).add(xv.mul(a)).intoArray(y, yo + i);
        }
        for (; i < len; i++) y[yo + i] += a * x[xo + i];
    }

    /** {@code dW[out, in] += dy[n, out]^T x[n, in]}; {@code db[out] += sum over rows of dy}. */
    static void linearDw(float[] dy, int n, int out, float[] x, int in, float[] dw, float[] db) {
        Parallel.forRange(out, 64, (o0, o1) -> {
            for (int o = o0; o < o1; o++) {
                double bsum = 0;
                int wo = o * in;
                for (int r = 0; r < n; r++) {
                    float g = dy[r * out + o];
                    bsum += g;
                    if (dw == null || g == 0f) continue;
                    int xo = r * in;
                    for (int i = 0; i < in; i++) dw[wo + i] += g * x[xo + i];
                }
                if (db != null) db[o] += (float) bsum;
            }
        });
    }

    /**
     * RMSNorm backward: {@code y = w * x * inv}, {@code inv = 1 / sqrt(mean(x^2) + eps)} per row, so
     * {@code dx = inv * (g w) - x inv^3 (sum (g w) x) / d} and {@code dw += sum over rows g x inv}.
     */
    static void rmsNorm(float[] g, float[] x, float[] w, int n, int d, float eps, float[] dx, float[] dw) {
        double[] dwAcc = dw == null ? null : new double[d];
        for (int r = 0; r < n; r++) {
            int o = r * d;
            double ss = 0;
            for (int k = 0; k < d; k++) ss += (double) x[o + k] * x[o + k];
            double inv = 1.0 / Math.sqrt((float) (ss / d) + eps);
            if (dx != null) {
                double dot = 0;
                for (int k = 0; k < d; k++) dot += (double) g[o + k] * w[k] * x[o + k];
                double c = inv * inv * inv * dot / d;
                for (int k = 0; k < d; k++) dx[o + k] += (float) (inv * g[o + k] * w[k] - c * x[o + k]);
            }
            if (dwAcc != null) for (int k = 0; k < d; k++) dwAcc[k] += (double) g[o + k] * x[o + k] * inv;
        }
        if (dw != null) for (int k = 0; k < d; k++) dw[k] += (float) dwAcc[k];
    }

    /**
     * Attention backward with the forward's mask semantics (segments, causal, query offset, grouped KV heads):
     * recomputes the softmax per (query, head), then {@code dV += P^T dO}, {@code dS = P (dP - sum(P dP))},
     * {@code dQ = scale dS K}, {@code dK += scale dS^T Q}. Parallel over KV heads (their dK/dV are disjoint).
     */
    static void attention(float[] q, int n, float[] k, float[] v, int kvLen, int hq, int hkv, int d, AttentionMask mask,
                          float[] dOut, float[] dq, float[] dk, float[] dv) {
        int group = hq / hkv;
        float scale = (float) (1.0 / Math.sqrt(d));
        final int[] so = mask.querySegments(n, kvLen);
        Parallel.forRange(hkv, 1, (k0, k1) -> {
            float[] p = new float[kvLen], dp = new float[kvLen];
            for (int kh = k0; kh < k1; kh++) {
                for (int h = kh * group; h < (kh + 1) * group; h++) {
                    for (int i = 0; i < n; i++) {
                        int lo = mask.keyStart(i, so), hi = mask.keyEnd(i, so, kvLen);
                        int qo = i * hq * d + h * d;
                        float max = Float.NEGATIVE_INFINITY;
                        for (int j = lo; j < hi; j++) {
                            int ko = j * hkv * d + kh * d;
                            float s = 0;
                            for (int c = 0; c < d; c++) s += q[qo + c] * k[ko + c];
                            s *= scale;
                            p[j] = s;
                            if (s > max) max = s;
                        }
                        double sum = 0;
                        for (int j = lo; j < hi; j++) {
                            p[j] = (float) Math.exp(p[j] - max);
                            sum += p[j];
                        }
                        float inv = (float) (1.0 / sum);
                        double dot = 0;
                        for (int j = lo; j < hi; j++) {
                            p[j] *= inv;
                            int vo = j * hkv * d + kh * d;
                            float s = 0;
                            for (int c = 0; c < d; c++) s += dOut[qo + c] * v[vo + c];
                            dp[j] = s;
                            dot += (double) p[j] * s;
                            if (dv != null) {
                                float pj = p[j];
                                for (int c = 0; c < d; c++) dv[vo + c] += pj * dOut[qo + c];
                            }
                        }
                        for (int j = lo; j < hi; j++) {
                            float ds = (float) (p[j] * (dp[j] - dot)) * scale;
                            if (ds == 0f) continue;
                            int ko = j * hkv * d + kh * d;
                            if (dq != null) for (int c = 0; c < d; c++) dq[qo + c] += ds * k[ko + c];
                            if (dk != null) for (int c = 0; c < d; c++) dk[ko + c] += ds * q[qo + c];
                        }
                    }
                }
            }
        });
    }

    /** Transposes {@code a[rows, cols]} into {@code [cols, rows]}. */
    static float[] transpose(float[] a, int rows, int cols) {
        float[] t = new float[a.length];
        for (int r = 0; r < rows; r++) for (int c = 0; c < cols; c++) t[c * rows + r] = a[r * cols + c];
        return t;
    }
}
