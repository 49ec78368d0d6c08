package dev.vlm4j.train.autograd;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Finite-difference checks of every recorded op's backward: a small graph using each op (including the in-place
 * rotary, scatterRows and copyRows into a cache, causal GQA attention and segment attention) feeds the
 * cross-entropy, and each parameter's analytic gradient is compared with central differences.
 */
class GradBackendTest {
    private final Random rng = new Random(7);
    private final Map<String, Tensor> p = new LinkedHashMap<>();

    private Tensor param(String name, long... shape) {
        float[] a = new float[Math.toIntExact(Tensor.numel(shape))];
        for (int i = 0; i < a.length; i++) a[i] = (float) (rng.nextGaussian() * 0.5);
        Tensor t = Tensor.of(a, shape);
        p.put(name, t);
        return t;
    }

    private double forward(GradBackend g, float[] cos, float[] sin, long[] labels) {
        int n = 5;
        Tensor x = g.embedding(p.get("table"), new int[]{3, 1, 4, 1, 5});
        g.scatterRows(x, new int[]{1, 3}, g.gelu(g.linear(p.get("extra"), p.get("wExtra"), p.get("bExtra"))));
        Tensor h = g.rmsNorm(x, p.get("gamma"), 1e-6f);
        Tensor q = g.linear(h, p.get("wq"), p.get("bq")), k = g.linear(h, p.get("wk"), null), v = g.linear(h, p.get("wv"), null);
        Tensor c = g.fromHost(cos, n, 4), s = g.fromHost(sin, n, 4);
        g.rotary(q, 2, c, s);
        g.rotary(k, 1, c, s);
        Tensor ck = g.zeros(8, 4), cv = g.zeros(8, 4);
        g.copyRows(ck, 0, k);
        g.copyRows(cv, 0, v);
        Tensor a = g.attention(q, ck, cv, n, 2, 1, AttentionMask.causal(0));
        Tensor qkv = g.linear(h, p.get("wqkv"), null);
        Tensor a2 = g.attention(g.columns(qkv, 0, 8), g.columns(qkv, 8, 16), g.columns(qkv, 16, 24), n, 2, 2,
                AttentionMask.segments(new int[]{0, 2, 5}));
        Tensor r = g.add(x, g.linear(g.add(a, g.scale(a2, 0.7f)), p.get("wo"), null));
        Tensor m = g.linear(g.siluMul(g.linear(r, p.get("wg"), null), g.linear(r, p.get("wu"), null)), p.get("wd"), null);
        r = g.add(r, g.mul(m, p.get("gate")));
        Tensor pooled = g.view(g.gatherRows(r, new int[]{0, 1, 2, 3, 4, 2}), 3, 16);
        Tensor logits = g.linear(g.view(g.linear(pooled, p.get("wp"), null), 6, 8), p.get("head"), null);
        return g.crossEntropy(logits, labels, 1.0);
    }

    @Test
    void analyticGradientsMatchFiniteDifferences() {
        param("table", 6, 8); param("extra", 2, 5); param("wExtra", 8, 5); param("bExtra", 8); param("gamma", 8);
        param("wq", 8, 8); param("bq", 8); param("wk", 4, 8); param("wv", 4, 8); param("wqkv", 24, 8); param("wo", 8, 8);
        param("wg", 12, 8); param("wu", 12, 8); param("wd", 8, 12); param("gate", 5, 8); param("wp", 16, 16); param("head", 9, 8);
        float[] cos = new float[20], sin = new float[20];
        for (int i = 0; i < 20; i++) {
            double ang = rng.nextDouble() * 3;
            cos[i] = (float) Math.cos(ang);
            sin[i] = (float) Math.sin(ang);
        }
        long[] labels = {-100, 2, 7, -100, 0, 8};
        GradBackend g = new GradBackend(new CpuBackend());
        p.forEach(g::addParameter);
        g.record(true);
        forward(g, cos, sin, labels);
        assertTrue(g.tapeLength() > 20, "tape has " + g.tapeLength() + " ops");
        g.backward();
        g.record(false);
        double eps = 1e-2;
        List<String> bad = new ArrayList<>();
        StringBuilder report = new StringBuilder();
        for (var e : g.parameters().entrySet()) {
            float[] w = e.getValue().tensor().heapFloats(), an = e.getValue().grad();
            double num2 = 0, den2 = 0;
            for (int i = 0; i < w.length; i++) {
                float keep = w[i];
                w[i] = (float) (keep + eps);
                double up = forward(g, cos, sin, labels);
                w[i] = (float) (keep - eps);
                double down = forward(g, cos, sin, labels);
                w[i] = keep;
                double fd = (up - down) / (2 * eps);
                num2 += (fd - an[i]) * (fd - an[i]);
                den2 += fd * fd;
            }
            double rel = Math.sqrt(num2 / Math.max(den2, 1e-30));
            report.append(String.format("%n  %s: relative L2 %.2e (|grad| %.3g)", e.getKey(), rel, Math.sqrt(den2)));
            if (rel > 2e-3 || den2 == 0) bad.add(e.getKey());
        }
        System.out.println("finite-difference check:" + report);
        assertTrue(bad.isEmpty(), "analytic and finite-difference gradients differ for " + bad + ":" + report);
    }

    @Test
    void modifyingASavedTensorInPlaceIsReported() {
        GradBackend g = new GradBackend(new CpuBackend());
        Tensor w = Tensor.of(new float[]{1, 2, 3, 4}, 2, 2);
        g.addParameter("w", w);
        g.record(true);
        Tensor x = g.linear(g.fromHost(new float[]{1, 1, 0.5f, -1}, 2, 2), w, null);
        Tensor y = g.siluMul(x, x); // saves x
        g.rotary(x, 1, g.fromHost(new float[]{1, 1, 1, 1}, 2, 2), g.fromHost(new float[]{0, 0, 0, 0}, 2, 2)); // x changes
        double loss = g.crossEntropy(g.linear(y, w, null), new long[]{-100, 1}, 1.0);
        assertFalse(Double.isNaN(loss));
        IllegalStateException ex = assertThrows(IllegalStateException.class, g::backward);
        assertTrue(ex.getMessage().contains("siluMul"), ex.getMessage());
        assertEquals(0, g.tapeLength(), "the tape is cleared after a failed backward");
    }

    /**
     * The chunked LM-head loss ({@link GradBackend#linearCrossEntropy}) against the logits' cross-entropy: the same
     * loss and the same gradient upstream of the hidden states, with one chunk and with chunks of 2 and 3 rows
     * (a chunk without targets skipped), labels ignored (-100) included.
     */
    @Test
    void chunkedHeadLossEqualsTheLogitsLoss() {
        int n = 7, width = 6, vocab = 11;
        Tensor x = param("x", n, 4), wIn = param("wIn", width, 4), head = param("head", vocab, width);
        long[] labels = {-100, 3, -100, -100, 10, 0, 7};
        double[] losses = new double[4];
        float[][] grads = new float[4][];
        long[] chunks = {Long.MAX_VALUE, 0, 2L * vocab, 3L * vocab};
        for (int c = 0; c < chunks.length; c++) {
            GradBackend g = new GradBackend(new CpuBackend());
            Parameter pw = g.addParameter("wIn", wIn);
            g.record(true);
            Tensor h = g.linear(x, wIn, null);
            losses[c] = c == 0 ? g.crossEntropy(g.linear(h, head, null), labels, 0.5) : g.linearCrossEntropy(h, head, labels, 0.5, chunks[c]);
            g.backward();
            g.record(false);
            grads[c] = pw.grad().clone();
        }
        for (int c = 1; c < chunks.length; c++) {
            assertEquals(losses[0], losses[c], 1e-12 * Math.abs(losses[0]), "loss with chunks of " + chunks[c] + " logits");
            for (int i = 0; i < grads[0].length; i++)
                assertEquals(grads[0][i], grads[c][i], 1e-6f * (1 + Math.abs(grads[0][i])), "gradient " + i + " with chunks of " + chunks[c]);
        }
        GradBackend g = new GradBackend(new CpuBackend());
        g.addParameter("head", head);
        assertThrows(IllegalArgumentException.class, () -> g.linearCrossEntropy(x, head, labels, 1.0), "a head with a gradient");
    }
}
