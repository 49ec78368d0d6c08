package dev.vlm4j.train.lora;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.util.*;
import java.util.function.UnaryOperator;

/**
 * Applies LoRA adapters unmerged, as a {@link Backend} decorator: a {@code linear} whose weight tensor is a LoRA
 * target computes {@code y = W x + b + scale * B(A(dropout(x)))} through the wrapped backend (so a recording
 * {@link dev.vlm4j.train.autograd.GradBackend} underneath gives A and B their gradients); every other op passes
 * through. Dropout applies only while {@link #training training}; a {@link #checkpoint checkpointed} segment that runs
 * again in the backward draws the same masks as in its forward.
 */
public final class LoraBackend implements Backend {
    /** One adapted linear: its module name, factors A {@code [r, in]} and B {@code [out, r]}, scale and dropout. */
    public record Target(String module, Tensor a, Tensor b, float scale, float dropout) {}

    private final Backend inner;
    private final IdentityHashMap<Tensor, List<Target>> targets = new IdentityHashMap<>();
    /** The same pairs in attachment order (an identity map iterates in no fixed order). */
    private final List<Target> attached = new ArrayList<>();
    private boolean training;
    private final MaskRandom rng = new MaskRandom(42);

    public LoraBackend(Backend inner) { this.inner = inner; }

    public Backend inner() { return inner; }

    /** Adds a LoRA pair to the linear whose weight is {@code baseWeight} (identity of the model's tensor). */
    public void attach(Tensor baseWeight, Target t) {
        if (t.a().dim(1) != baseWeight.dim(1) || t.b().dim(0) != baseWeight.dim(0) || t.a().dim(0) != t.b().dim(1))
            throw new IllegalArgumentException("LoRA factors of " + t.module() + " (A " + Arrays.toString(t.a().shape()) + ", B "
                    + Arrays.toString(t.b().shape()) + ") do not fit the weight " + Arrays.toString(baseWeight.shape()));
        targets.computeIfAbsent(baseWeight, k -> new ArrayList<>()).add(t);
        attached.add(t);
    }

    /** Every attached pair, in attachment order. */
    public List<Target> targets() { return Collections.unmodifiableList(attached); }

    /** Whether a LoRA adapter is attached to the weight {@code w}. */
    public boolean adapts(Tensor w) { return targets.containsKey(w); }

    /** Training mode turns dropout on (with the given seed for its masks). */
    public void training(boolean on, long seed) {
        training = on;
        rng.setSeed(seed);
    }

    /**
     * Gradient checkpointing re-runs a segment in the backward: every run after the first draws its dropout masks
     * from the generator state (and training mode) the segment started with, and leaves the generator where it was,
     * so the re-run reproduces the forward's masks and the masks of everything after are those of a run without
     * checkpointing.
     */
    @Override
    public Tensor checkpoint(String segment, Tensor input, UnaryOperator<Tensor> fn) {
        long start = rng.state;
        boolean trainingAtStart = training;
        boolean[] ran = {false};
        return inner.checkpoint(segment, input, x -> {
            if (!ran[0]) {
                ran[0] = true;
                return fn.apply(x);
            }
            long now = rng.state;
            boolean trainingNow = training;
            rng.state = start;
            training = trainingAtStart;
            try {
                return fn.apply(x);
            } finally {
                rng.state = now;
                training = trainingNow;
            }
        });
    }

    /**
     * {@link java.util.Random}'s generator (the 48-bit linear congruential one its documentation specifies, so the
     * masks are those {@code new Random(seed).nextFloat()} gives) with its state in the open, to be saved and restored.
     */
    static final class MaskRandom {
        private static final long MULTIPLIER = 0x5DEECE66DL, ADDEND = 0xBL, MASK = (1L << 48) - 1;
        long state;

        MaskRandom(long seed) { setSeed(seed); }

        void setSeed(long seed) { state = (seed ^ MULTIPLIER) & MASK; }

        float nextFloat() {
            state = (state * MULTIPLIER + ADDEND) & MASK;
            return (int) (state >>> (48 - 24)) / (float) (1 << 24);
        }

        /** The seed of one dropout mask ({@link Backend#dropout}): the next state of the generator. */
        long nextSeed() {
            state = (state * MULTIPLIER + ADDEND) & MASK;
            return state;
        }
    }

    /**
     * {@code x W^T + b} plus the LoRA updates. The rank-r products come first and the frozen product adds them in its
     * epilogue ({@code addLinear}), so the wide output is written once rather than written and then read again to add
     * the update; the bias goes with the first update.
     */
    @Override
    public Tensor linear(Tensor x, Tensor w, Tensor bias) {
        List<Target> ts = targets.get(w);
        if (ts == null) return inner.linear(x, w, bias);
        return inner.addLinear(updates(null, bias, x, ts), x, w);
    }

    /** {@code residual + x W^T} with the LoRA updates of W added too (o_proj, down_proj). */
    @Override
    public Tensor addLinear(Tensor residual, Tensor x, Tensor w) {
        List<Target> ts = targets.get(w);
        if (ts == null) return inner.addLinear(residual, x, w);
        return inner.addLinear(updates(residual, null, x, ts), x, w);
    }

    /**
     * {@code residual + bias + scale B A dropout(x)} summed over the pairs (either of residual and bias may be null, not
     * both given); the scale applies to the rank-r product, the smallest tensor.
     */
    private Tensor updates(Tensor residual, Tensor bias, Tensor x, List<Target> ts) {
        Tensor acc = residual;
        for (Target t : ts) {
            boolean drop = training && t.dropout() > 0;
            Tensor u = inner.loraDown(x, t.a(), t.scale(), drop ? t.dropout() : 0f, drop ? rng.nextSeed() : 0L);
            acc = acc == null ? inner.linear(u, t.b(), bias) : inner.addLinear(acc, u, t.b());
        }
        return acc;
    }

    @Override public Device device() { return inner.device(); }
    @Override public Tensor upload(Tensor hostWeight) { return inner.upload(hostWeight); }
    @Override public Tensor fromHost(float[] values, long... shape) { return inner.fromHost(values, shape); }
    @Override public float[] toHost(Tensor t) { return inner.toHost(t); }
    @Override public Tensor zeros(long... shape) { return inner.zeros(shape); }
    @Override public Tensor empty(long... shape) { return inner.empty(shape); }
    @Override public Tensor rmsNorm(Tensor x, Tensor w, float eps) { return inner.rmsNorm(x, w, eps); }
    @Override public Tensor add(Tensor a, Tensor b) { return inner.add(a, b); }
    @Override public Tensor siluMul(Tensor gate, Tensor up) { return inner.siluMul(gate, up); }
    @Override public Tensor gelu(Tensor x) { return inner.gelu(x); }
    @Override public Tensor embedding(Tensor table, int[] ids) { return inner.embedding(table, ids); }
    @Override public Tensor gatherRows(Tensor x, int[] rows) { return inner.gatherRows(x, rows); }
    @Override public void scatterRows(Tensor dst, int[] rows, Tensor src) { inner.scatterRows(dst, rows, src); }
    @Override public void copyRows(Tensor dst, int dstRow, Tensor src) { inner.copyRows(dst, dstRow, src); }
    @Override public Tensor columns(Tensor x, int from, int to) { return inner.columns(x, from, to); }
    @Override public void rotary(Tensor x, int heads, Tensor cos, Tensor sin) { inner.rotary(x, heads, cos, sin); }
    @Override public Tensor scale(Tensor x, float s) { return inner.scale(x, s); }
    @Override public Tensor mul(Tensor a, Tensor b) { return inner.mul(a, b); }
    @Override public Tensor view(Tensor x, long... shape) { return inner.view(x, shape); }
    @Override public Tensor dropout(Tensor x, float p, long seed) { return inner.dropout(x, p, seed); }
    @Override public Tensor loraDown(Tensor x, Tensor a, float scale, float p, long seed) { return inner.loraDown(x, a, scale, p, seed); }
    @Override public dev.vlm4j.compute.GradOps gradOps() { return inner.gradOps(); }
    @Override public long peakDeviceBytes() { return inner.peakDeviceBytes(); }
    @Override public Tensor scoped(java.util.function.Supplier<Tensor> body) { return inner.scoped(body); }
    @Override
    public Tensor scoped(java.util.function.Supplier<Tensor> body, java.util.function.Function<Tensor, java.util.List<Tensor>> keep) {
        return inner.scoped(body, keep);
    }

    @Override
    public Tensor attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        return inner.attention(q, k, v, kvLen, hq, hkv, mask);
    }

    @Override public void close() { inner.close(); }
}
