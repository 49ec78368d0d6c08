package dev.vlm4j.train.autograd;

import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;

import java.util.Arrays;

/** The losses that seed a {@link GradBackend}'s backward (see {@link GradBackend#crossEntropy}, {@link GradBackend#linearCrossEntropy}). */
final class Losses {
    private Losses() {}

    /** Row t's target: {@code labels[t + 1]} (transformers' shift), -1 where there is none (-100 or the last row). */
    private static int[] targets(long[] labels, int rows, int vocab) {
        int[] targets = new int[rows];
        Arrays.fill(targets, -1);
        for (int t = 0; t + 1 < rows; t++) {
            long y = labels[t + 1];
            if (y == -100) continue;
            if (y < 0 || y >= vocab) throw new IllegalArgumentException("label " + y + " outside the vocabulary of " + vocab);
            targets[t] = (int) y;
        }
        return targets;
    }

    private static int count(int[] targets) {
        int c = 0;
        for (int t : targets) if (t >= 0) c++;
        return c;
    }

    static double crossEntropy(GradBackend g, Tensor logits, long[] labels, double lossScale) {
        int vocab = (int) logits.dim(-1), rows = (int) (logits.numel() / vocab);
        if (labels.length != rows) throw new IllegalArgumentException(rows + " logit rows but " + labels.length + " labels");
        int[] targets = targets(labels, rows, vocab);
        if (count(targets) == 0) return Double.NaN;
        GradOps.Loss l = g.ops().crossEntropy(logits, targets);
        double loss = l.sum() / l.count();
        GradBackend.Node n = g.recording() ? g.nodeOf(logits) : null;
        if (n != null) {
            double c = lossScale / l.count();
            g.seed(() -> l.backward(n.grad(), c));
        }
        return loss;
    }

    static double linearCrossEntropy(GradBackend g, Tensor h, Tensor w, long[] labels, double lossScale, long chunkLogits) {
        if (g.hasNode(w)) throw new IllegalArgumentException("linearCrossEntropy: the weight " + w + " has a gradient");
        int n = (int) (h.numel() / h.dim(-1)), vocab = (int) w.dim(0), width = (int) h.dim(-1);
        if (labels.length != n) throw new IllegalArgumentException(n + " hidden rows but " + labels.length + " labels");
        if (h.dtype() != DType.F32 || w.dim(-1) != width)
            throw new IllegalArgumentException("linearCrossEntropy: hidden states " + h + " against weight " + w);
        int[] targets = targets(labels, n, vocab);
        int count = count(targets);
        if (count == 0) return Double.NaN;
        Backend inner = g.inner();
        GradOps ops = g.ops();
        GradBackend.Node nh = g.recordedNode(h);
        Tensor dh = nh == null ? null : inner.zeros(h.shape());
        float c = (float) (lossScale / count);
        // whole 128-row tiles where the budget allows (the products' efficiency falls off sharply below that)
        long rowsFit = chunkLogits / vocab;
        int chunk = (int) Math.max(1, Math.min(n, rowsFit >= 128 ? rowsFit / 128 * 128 : rowsFit));
        double sum = 0;
        for (int r0 = 0; r0 < n; r0 += chunk) {
            int from = r0, to = Math.min(n, r0 + chunk);
            int[] tc = Arrays.copyOfRange(targets, from, to);
            if (count(tc) == 0) continue;
            double[] part = new double[1];
            inner.scoped(() -> {
                Tensor logits = inner.linear(rowsOf(h, from, to), w, null);
                GradOps.Loss l = ops.crossEntropy(logits, tc);
                part[0] = l.sum();
                if (dh != null) {
                    Tensor dl = inner.zeros(to - from, vocab), dc = inner.zeros(to - from, width);
                    l.backward(dl, c);
                    ops.linearDx(dl, w, dc);
                    int[] rows = new int[to - from];
                    for (int i = 0; i < rows.length; i++) rows[i] = from + i;
                    ops.addRows(dh, rows, dc, null, rows.length);
                }
                return null;
            });
            sum += part[0];
        }
        if (nh != null) g.seed(() -> g.contribute(nh, dh));
        return sum / count;
    }

    /** Rows [from, to) of a row-major float32 tensor {@code [n, width]}, sharing its memory (an input, not a gradient). */
    private static Tensor rowsOf(Tensor t, int from, int to) {
        long w = t.dim(-1);
        return new Tensor(t.dtype(), new long[]{to - from, w}, t.data().asSlice(from * w * 4, (to - from) * w * 4), t.device());
    }
}
