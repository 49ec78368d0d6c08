package dev.vlm4j.trace;

import dev.vlm4j.tensor.Tensor;

import java.util.*;

/**
 * Compares a trace with a reference fixture under the agreement stated in shared/fixtures/README.md:
 * ids, positions and grids identical; pixel values within 0.03 max / 0.002 mean abs; vision outputs, hidden states
 * and logits within 0.02; top-1 ids identical where the reference's lead is at least 0.01; train_loss within 1e-3;
 * gradients ({@code grad.<parameter>}) within relative L2 error 1e-2 per tensor, row-sparse ones
 * ({@code grad.<parameter>.rows}) over the same rows in the same order.
 */
public final class TraceComparison {
    /** One check: what was compared, whether it holds, and the measured figures. */
    public record Check(String name, boolean ok, String detail) {
        @Override public String toString() { return (ok ? "ok    " : "FAIL  ") + name + ": " + detail; }
    }

    static final Set<String> EXACT = Set.of("input_ids", "position_ids", "rope_deltas", "image_grid_thw", "video_grid_thw",
            "generated_ids", "train_input_ids", "train_labels");
    static final double PIXEL_MAX = 0.03, PIXEL_MEAN = 0.002, VALUE_MAX = 0.02, LEAD = 0.01, LOSS = 1e-3, GRAD_REL_L2 = 1e-2;

    private TraceComparison() {}

    /** Every check for the tensors the reference holds. */
    public static List<Check> compare(Map<String, Tensor> ref, Map<String, Tensor> got) {
        List<Check> out = new ArrayList<>();
        for (String name : ref.keySet()) {
            if (name.equals("attention_mask") || name.equals("mm_token_type_ids")) continue;
            Tensor r = ref.get(name), g = got.get(name);
            if (g == null) {
                out.add(new Check(name, false, "missing from the trace"));
                continue;
            }
            if (name.startsWith("grad.")) {
                if (name.endsWith(".rows")) out.add(exact(name, r, g));
                else out.add(relativeL2(name, r, g, GRAD_REL_L2));
                continue;
            }
            if (name.endsWith("_ids") && name.startsWith("logits_top20") || name.equals("gen_top5_ids")) continue; // checked with values
            if (EXACT.contains(name)) {
                out.add(exact(name, r, g));
            } else if (name.startsWith("pixel_values")) {
                out.add(close(name, r, g, PIXEL_MAX, PIXEL_MEAN));
            } else if (name.equals("logits_top20_values")) {
                out.addAll(topK(name, r, ref.get("logits_top20_ids"), g, got.get("logits_top20_ids")));
            } else if (name.equals("gen_top5_values")) {
                out.addAll(topK(name, r, ref.get("gen_top5_ids"), g, got.get("gen_top5_ids")));
            } else if (name.equals("train_loss")) {
                out.add(close(name, r, g, LOSS, Double.MAX_VALUE));
            } else if (name.equals("second_per_grid_ts")) {
                out.add(close(name, r, g, 1e-6, Double.MAX_VALUE));
            } else {
                out.add(close(name, r, g, VALUE_MAX, Double.MAX_VALUE));
            }
        }
        return out;
    }

    static Check exact(String name, Tensor r, Tensor g) {
        long[] a = r.toLongArray(), b = g.toLongArray();
        if (!Arrays.equals(r.shape(), g.shape()))
            return new Check(name, false, "shape " + Arrays.toString(g.shape()) + ", expected " + Arrays.toString(r.shape())
                    + "; expected " + head(a) + " got " + head(b));
        for (int i = 0; i < a.length; i++)
            if (a[i] != b[i]) return new Check(name, false, "first difference at flat index " + i + ": expected " + a[i] + ", got " + b[i]);
        return new Check(name, true, "identical (" + a.length + " values)");
    }

    static Check close(String name, Tensor r, Tensor g, double maxTol, double meanTol) {
        if (r.numel() != g.numel())
            return new Check(name, false, "shape " + Arrays.toString(g.shape()) + ", expected " + Arrays.toString(r.shape()));
        float[] a = r.toFloatArray(), b = g.toFloatArray();
        double max = 0, sum = 0;
        int at = 0;
        for (int i = 0; i < a.length; i++) {
            double d = Math.abs((double) a[i] - b[i]);
            if (Double.isNaN(d)) return new Check(name, false, "NaN at flat index " + i);
            sum += d;
            if (d > max) { max = d; at = i; }
        }
        double mean = a.length == 0 ? 0 : sum / a.length;
        boolean ok = max <= maxTol && mean <= meanTol;
        return new Check(name, ok, String.format("max abs diff %.3g (limit %.3g) at index %d (expected %.6f, got %.6f), mean %.3g%s",
                max, maxTol, at, a.length == 0 ? 0 : a[at], b.length == 0 ? 0 : b[at], mean,
                meanTol < Double.MAX_VALUE ? String.format(" (limit %.3g)", meanTol) : ""));
    }

    /** {@code ||g - r|| / ||r||} (L2 over all elements) within {@code tol}; reports the worst element too. */
    static Check relativeL2(String name, Tensor r, Tensor g, double tol) {
        if (!Arrays.equals(r.shape(), g.shape()))
            return new Check(name, false, "shape " + Arrays.toString(g.shape()) + ", expected " + Arrays.toString(r.shape()));
        float[] a = r.toFloatArray(), b = g.toFloatArray();
        double num = 0, den = 0, worst = 0;
        int at = 0;
        for (int i = 0; i < a.length; i++) {
            double d = (double) b[i] - a[i];
            if (Double.isNaN(d)) return new Check(name, false, "NaN at flat index " + i);
            num += d * d;
            den += (double) a[i] * a[i];
            if (Math.abs(d) > worst) { worst = Math.abs(d); at = i; }
        }
        double rel = den == 0 ? (num == 0 ? 0 : Double.POSITIVE_INFINITY) : Math.sqrt(num / den);
        return new Check(name, rel <= tol, String.format("relative L2 error %.3g (limit %.3g), |ref| %.3g; worst element %d: expected %.6g, got %.6g",
                rel, tol, Math.sqrt(den), at, a.length == 0 ? 0 : a[at], b.length == 0 ? 0 : b[at]));
    }

    /** Top-k rows: sorted values within 0.02, and the same top-1 id wherever the reference leads by >= 0.01. */
    static List<Check> topK(String name, Tensor rv, Tensor ri, Tensor gv, Tensor gi) {
        List<Check> out = new ArrayList<>();
        if (gi == null || rv.numel() != gv.numel()) {
            out.add(new Check(name, false, "shape " + Arrays.toString(gv.shape()) + ", expected " + Arrays.toString(rv.shape())));
            return out;
        }
        int k = (int) rv.dim(-1), rows = (int) (rv.numel() / k);
        float[] a = rv.toFloatArray(), b = gv.toFloatArray();
        long[] ai = ri.toLongArray(), bi = gi.toLongArray();
        double max = 0;
        int worstRow = 0, checked = 0;
        String top1Fail = null;
        for (int r = 0; r < rows; r++) {
            for (int j = 0; j < k; j++) {
                double d = Math.abs(a[r * k + j] - b[r * k + j]);
                if (d > max) { max = d; worstRow = r; }
            }
            if (a[r * k] - a[r * k + 1] >= LEAD) {
                checked++;
                if (ai[r * k] != bi[r * k] && top1Fail == null)
                    top1Fail = "row " + r + ": expected id " + ai[r * k] + ", got " + bi[r * k];
            }
        }
        out.add(new Check(name, max <= VALUE_MAX, String.format("max abs diff of sorted values %.3g (limit %.3g), worst row %d", max, VALUE_MAX, worstRow)));
        out.add(new Check(name.replace("values", "top1"), top1Fail == null,
                top1Fail == null ? "same top-1 id on all " + checked + " rows with a lead >= 0.01 (of " + rows + ")" : top1Fail));
        return out;
    }

    private static String head(long[] a) {
        return Arrays.toString(Arrays.copyOf(a, Math.min(a.length, 12))) + (a.length > 12 ? "..." : "");
    }
}
