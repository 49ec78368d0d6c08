package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.tensor.Tensor;

/**
 * {@link GradOps} on the host: gradients are heap float32 tensors ({@link Tensor#heapFloats}, what
 * {@link CpuBackend#zeros} makes) updated in place; saved forward tensors are read through the backend's
 * {@link Backend#toHost}. Sums run in the orders the CPU training has always used (float64 where it did), so CPU
 * gradients are those of the parity suite.
 */
public final class HostGradOps implements GradOps {
    private final Backend backend;

    public HostGradOps(Backend backend) { this.backend = backend; }

    private static float[] g(Tensor t) {
        if (t == null) return null;
        float[] a = t.heapFloats();
        if (a == null) throw new IllegalArgumentException("host gradients must be heap float32 tensors, got " + t);
        return a;
    }

    private float[] v(Tensor t) { return backend.toHost(t); }

    private static int rows(Tensor t) { return (int) (t.numel() / t.dim(-1)); }

    @Override
    public void axpy(Tensor dst, Tensor src, float alpha) {
        float[] d = g(dst), s = v(src);
        if (alpha == 1f) for (int i = 0; i < s.length; i++) d[i] += s[i];
        else for (int i = 0; i < s.length; i++) d[i] += s[i] * alpha;
    }

    @Override
    public void addDropout(Tensor dst, Tensor g, float p, long seed) {
        float[] d = g(dst), s = v(g);
        int threshold = Backend.dropoutThreshold(p);
        float scale = 1f / (1f - p);
        for (int i = 0; i < s.length; i++) d[i] += Backend.dropoutBits(seed, i) >= threshold ? s[i] * scale : 0f;
    }

    @Override
    public void addProduct(Tensor dst, Tensor a, Tensor b) {
        float[] d = g(dst), x = v(a), z = v(b);
        for (int i = 0; i < d.length; i++) d[i] += x[i] * z[i];
    }

    @Override
    public void linearDx(Tensor dy, Tensor w, Tensor dx) {
        int n = rows(dy), out = (int) dy.dim(-1), in = (int) w.dim(1);
        GradKernels.linearDx(v(dy), n, out, v(w), in, g(dx));
    }

    @Override
    public void linearDw(Tensor dy, Tensor x, Tensor dw, Tensor db) {
        int n = rows(dy), out = (int) dy.dim(-1);
        int in = x != null ? (int) x.dim(-1) : dw == null ? 0 : (int) dw.dim(1);
        GradKernels.linearDw(v(dy), n, out, dw == null ? null : v(x), in, g(dw), g(db));
    }

    @Override
    public void rmsNorm(Tensor dy, Tensor x, Tensor w, float eps, Tensor dx, Tensor dw) {
        GradKernels.rmsNorm(v(dy), v(x), v(w), rows(x), (int) x.dim(-1), eps, g(dx), g(dw));
    }

    @Override
    public void siluMul(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) {
        float[] gr = v(dy), a = v(gate), u = v(up), dg = g(dGate), du = g(dUp);
        for (int i = 0; i < gr.length; i++) {
            double s = 1.0 / (1.0 + Math.exp(-a[i]));
            if (dg != null) dg[i] += (float) (gr[i] * u[i] * s * (1.0 + a[i] * (1.0 - s)));
            if (du != null) du[i] += (float) (gr[i] * a[i] * s);
        }
    }

    @Override
    public void gelu(Tensor dy, Tensor x, Tensor dx) {
        float[] gr = v(dy), a = v(x), d = g(dx);
        double invSqrt2Pi = 1.0 / Math.sqrt(2 * Math.PI);
        for (int i = 0; i < gr.length; i++) {
            double cdf = 0.5 * (1.0 + Erf.erf(a[i] / Math.sqrt(2.0)));
            d[i] += (float) (gr[i] * (cdf + a[i] * Math.exp(-0.5 * a[i] * a[i]) * invSqrt2Pi));
        }
    }

    @Override
    public void addRows(Tensor dst, int[] dstRows, Tensor src, int[] srcRows, int count) {
        float[] d = g(dst), s = v(src);
        int w = (int) dst.dim(-1);
        for (int i = 0; i < count; i++) {
            int dr = dstRows == null ? i : dstRows[i], sr = srcRows == null ? i : srcRows[i];
            int dof = dr * w, sof = sr * w;
            for (int k = 0; k < w; k++) d[dof + k] += s[sof + k];
        }
    }

    @Override
    public void addColumns(Tensor dx, int from, Tensor dy) {
        float[] d = g(dx), s = v(dy);
        int w = (int) dy.dim(-1), dw = (int) dx.dim(-1), n = rows(dy);
        for (int r = 0; r < n; r++) for (int c = 0; c < w; c++) d[r * dw + from + c] += s[r * w + c];
    }

    @Override
    public void rotary(Tensor dy, int heads, Tensor cos, Tensor sin, Tensor dx) {
        float[] gr = v(dy), c = v(cos), s = v(sin), d = g(dx);
        int n = rows(dy), hd = (int) cos.dim(-1), half = hd / 2;
        for (int r = 0; r < n; r++) {
            for (int h = 0; h < heads; h++) {
                int o = r * heads * hd + h * hd, co = r * hd;
                for (int j = 0; j < half; j++) {
                    float g1 = gr[o + j], g2 = gr[o + j + half];
                    d[o + j] += g1 * c[co + j] + g2 * s[co + j + half];
                    d[o + j + half] += g2 * c[co + j + half] - g1 * s[co + j];
                }
            }
        }
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor dOut,
                          Tensor dq, Tensor dk, Tensor dv) {
        int n = rows(q), d = (int) (q.dim(-1) / hq);
        GradKernels.attention(v(q), n, v(k), v(v), kvLen, hq, hkv, d, mask, v(dOut), g(dq), g(dk), g(dv));
    }

    @Override
    public Loss crossEntropy(Tensor logits, int[] targets) {
        int vocab = (int) logits.dim(-1), rows = rows(logits);
        if (targets.length != rows) throw new IllegalArgumentException(rows + " logit rows but " + targets.length + " targets");
        float[] l = v(logits);
        double[] lse = new double[rows];
        double sum = 0;
        int count = 0;
        for (int t = 0; t < rows; t++) {
            int y = targets[t];
            if (y < 0) continue;
            if (y >= vocab) throw new IllegalArgumentException("label " + y + " outside the vocabulary of " + vocab);
            int off = t * vocab;
            double max = Double.NEGATIVE_INFINITY;
            for (int i = 0; i < vocab; i++) max = Math.max(max, l[off + i]);
            double s = 0;
            for (int i = 0; i < vocab; i++) s += Math.exp(l[off + i] - max);
            lse[t] = max + Math.log(s);
            sum += lse[t] - l[off + y];
            count++;
        }
        double total = sum;
        int cnt = count;
        return new Loss() {
            @Override public double sum() { return total; }
            @Override public int count() { return cnt; }

            @Override
            public void backward(Tensor dLogits, double scale) {
                float[] gr = g(dLogits);
                for (int t = 0; t < rows; t++) {
                    int y = targets[t];
                    if (y < 0) continue;
                    int off = t * vocab;
                    for (int i = 0; i < vocab; i++) gr[off + i] += (float) (Math.exp(l[off + i] - lse[t]) * scale);
                    gr[off + y] -= (float) scale;
                }
            }
        };
    }

    @Override
    public void adamW(Tensor p, Tensor grad, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, double bc1, double bc2) {
        float[] pa = g(p), ga = v(grad), mi = g(m), vi = g(v);
        for (int k = 0; k < pa.length; k++) {
            mi[k] = (float) (beta1 * mi[k] + (1 - beta1) * ga[k]);
            vi[k] = (float) (beta2 * vi[k] + (1 - beta2) * (double) ga[k] * ga[k]);
            double upd = (mi[k] / bc1) / (Math.sqrt(vi[k] / bc2) + eps);
            pa[k] = (float) (pa[k] * (1 - lr * weightDecay) - lr * upd);
        }
    }

    @Override
    public double sumSquares(Tensor t) {
        double ss = 0;
        for (float x : v(t)) ss += (double) x * x;
        return ss;
    }

    @Override
    public void scale(Tensor t, double s) {
        float[] a = g(t);
        for (int k = 0; k < a.length; k++) a[k] = (float) (a[k] * s);
    }

    @Override
    public void zero(Tensor t) { java.util.Arrays.fill(g(t), 0f); }

    @Override
    public void copyFromHost(Tensor dst, float[] values) {
        float[] d = g(dst);
        if (d.length != values.length) throw new IllegalArgumentException(values.length + " values for " + dst);
        System.arraycopy(values, 0, d, 0, d.length);
    }
}
