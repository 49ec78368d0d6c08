package dev.vlm4j.train.autograd;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.*;
import java.util.function.UnaryOperator;

/**
 * Reverse-mode autograd as a {@link Backend} decorator: every op computes its forward through the wrapped backend
 * and, while {@link #record recording}, appends its backward to a tape, so the model (written once against
 * {@link Backend}) trains without a second copy of its code.
 * <p>
 * Bookkeeping: an identity map tensor -> {@link Node} gives the autograd node of each tensor's current value.
 * In-place ops (rotary, scatterRows, copyRows, e.g. KV-cache writes) are versioned: the tensor's node is replaced by
 * the op's node, whose backward routes the gradient to the previous value's node. Tensors an op saves for its
 * backward are checked to be unmodified (by version) when the backward runs. Parameters registered with
 * {@link #addParameter} are leaves with float32 gradient buffers; unregistered tensors (frozen weights, inputs)
 * get no gradients. {@link #crossEntropy} seeds the backward with the loss gradient; {@link #backward} runs the tape.
 * <p>
 * Gradient checkpointing ({@link #checkpointing(boolean)}): each {@link #checkpoint} segment (a decoder layer, a ViT
 * block) runs forward without recording and leaves one op on the tape that keeps only the segment's input. When
 * the backward reaches it, the segment runs again with recording on, into a tape of its own, which is backpropagated
 * and dropped: the saved activations of one segment at a time instead of all of them, for a second forward.
 * {@link #savedActivationBytes} counts what the tape holds.
 */
public final class GradBackend implements Backend {
    /** The gradient slot of one tensor value (a parameter leaf or an op's output): a float32 tensor of the backend. */
    final class Node {
        final long[] shape;
        Tensor grad;
        final Parameter param;
        /**
         * Ops recorded so far that read this value (each may add to its gradient), less those that added their
         * contribution through {@link #contribute}; 0 means no contribution can come any more.
         */
        int uses;

        Node(long[] shape, Parameter param) {
            this.shape = shape;
            this.param = param;
        }

        Tensor grad() {
            if (grad == null) grad = inner.zeros(shape);
            return grad;
        }

        /** Whether no gradient has come yet (an op may then write it instead of adding to zeros: {@link #fresh}). */
        boolean unwritten() { return grad == null && param == null; }

        /** A gradient tensor with undefined contents, for the first contribution to write in full. */
        Tensor fresh() {
            if (!unwritten()) throw new IllegalStateException("a gradient came already");
            grad = inner.empty(shape);
            return grad;
        }
    }

    /** One recorded op: its output's node, the tensors it saved (released once it has run) and its backward. */
    private record Op(String name, Node out, List<Saved> saved, Runnable backward) {}

    /**
     * A tensor saved for a backward, with the version it had then. While saved, an activation (not a weight) counts
     * in {@link #savedActivationBytes}; the op it belongs to releases it. What is kept may be a compact copy
     * ({@link GradOps#compact}, expanded again for the backward), or nothing but the identity when the backend keeps
     * what its backward reads ({@code held} null).
     */
    private final class Saved {
        final Tensor t;
        final int version;
        final boolean activation;
        /** The tensor whose memory stays for the backward: t, its compact form, or null (the identity alone). */
        final Tensor held;

        Saved(Tensor t) { this(t, Keep.AS_IS); }

        Saved(Tensor t, Keep how) {
            this.t = t;
            this.version = versionOf(t);
            this.activation = !weights.contains(t) && !byTensor.containsKey(t);
            // compact only activations kept across the forward (a re-run's tape lives for one segment), and not
            // one already kept as it is (an attention output that also feeds a LoRA down-projection)
            Tensor h = t;
            if (activation && how == Keep.IDENTITY) h = null;
            else if (activation && how == Keep.COMPACT && recomputing == 0 && !GradBackend.this.held.containsKey(t.data())) h = ops.compact(t);
            this.held = h;
            if (activation && h != null) hold(h.data());
            pending.add(this);
        }

        Tensor check(String op) {
            if (versionOf(t) != version)
                throw new IllegalStateException(op + ": a tensor saved for the backward was modified in place afterwards ("
                        + t + ", version " + version + " -> " + versionOf(t) + ")");
            return t;
        }

        /** The saved values as kept (possibly compact) for a backward that takes that form ({@link GradOps#compact}). */
        Tensor raw(String op) {
            check(op);
            return held == null ? t : held;
        }

        /** The saved values (as float32) for the backward of {@code op}. */
        Tensor values(String op) {
            check(op);
            return held == null || held == t ? t : ops.expand(held);
        }
    }

    /** How a {@link Saved} keeps its tensor. */
    private enum Keep { AS_IS, COMPACT, IDENTITY }

    /** A checkpointed piece of the forward: its input, the input's node (null: no gradient) and the function to re-run. */
    private final class Segment {
        final String name;
        final Tensor input;
        final Node inputNode;
        final UnaryOperator<Tensor> fn;
        /** Whether the segment reads a tensor with a gradient (its input or a parameter), so that it needs a backward. */
        boolean needsBackward;

        Segment(String name, Tensor input, UnaryOperator<Tensor> fn) {
            this.name = name;
            this.input = input;
            this.inputNode = nodes.get(input);
            this.fn = fn;
            this.needsBackward = inputNode != null;
        }

        /** Notes a tensor an op of the untaped forward reads. */
        void reads(Tensor t) {
            Node n = nodes.get(t);
            if (n == null) return;
            if (n.param == null && t != input)
                throw new IllegalStateException("checkpoint " + name + " reads a tensor with a gradient other than its input (" + t + ")");
            needsBackward = true;
        }
    }

    private final Backend inner;
    private IdentityHashMap<Tensor, Node> nodes = new IdentityHashMap<>();
    private IdentityHashMap<Tensor, Integer> versions = new IdentityHashMap<>();
    private final IdentityHashMap<Tensor, Parameter> byTensor = new IdentityHashMap<>();
    private final Map<String, Parameter> params = new LinkedHashMap<>();
    private List<Op> tape = new ArrayList<>();
    /** The ops of each recorded segment that was not checkpointed, by end index (exclusive) on {@link #tape}. */
    private Map<Integer, List<Range>> ranges = new HashMap<>();

    /** Ops [from, end) of a recorded segment and its input's node (null: no gradient). */
    private record Range(int from, Node input) {}
    private final List<Runnable> seeds = new ArrayList<>();
    private boolean recording;
    /** Which segments run again in the backward (null: none, gradient checkpointing off). */
    private java.util.function.Predicate<String> recomputed;
    /** Open re-runs of checkpointed segments (segments nested in one run plainly). */
    private int recomputing;
    /** The segment whose first forward runs now (untaped), or null. */
    private Segment running;

    /** Weights placed through {@link #upload}: saved for backwards but not counted as activations. */
    private final Set<Tensor> weights = Collections.newSetFromMap(new IdentityHashMap<>());
    /** Saved tensors of the op being recorded, until {@link #push} hands them to it. */
    private List<Saved> pending = new ArrayList<>();
    /** How many live {@link Saved}s hold each activation buffer; their bytes, now and at most. */
    private final Map<MemorySegment, Integer> held = new HashMap<>();
    private long heldBytes, peakHeldBytes;
    /**
     * SwiGLU outputs of this tape whose compact copy the backend rebuilds from the kept gate and up
     * ({@link GradOps#rebuildsSwiGlu}): a LoRA down-projection of one keeps nothing more for its dA.
     */
    private final IdentityHashMap<Tensor, Saved[]> swiGluInputs = new IdentityHashMap<>();

    private final GradOps ops;

    public GradBackend(Backend inner) {
        this.inner = inner;
        this.ops = inner.gradOps();
    }

    public Backend inner() { return inner; }

    /** Registers a trainable tensor (identity matters: the tensor the model passes to the ops). */
    /** A new parameter's node, holding its zeroed gradient. */
    Node parameterNode(Tensor t, Parameter p) {
        Node n = new Node(t.shape(), p);
        n.grad = inner.zeros(t.shape());
        return n;
    }

    public Parameter addParameter(String name, Tensor t) {
        if (params.containsKey(name)) throw new IllegalArgumentException("parameter " + name + " registered twice");
        Parameter existing = byTensor.get(t);
        if (existing != null)
            throw new IllegalArgumentException(name + " is the same tensor as parameter " + existing.name());
        Parameter p = new Parameter(this, name, t);
        params.put(name, p);
        byTensor.put(t, p);
        nodes.put(t, p.node);
        return p;
    }

    /** Registered parameters in registration order. */
    public Map<String, Parameter> parameters() { return Collections.unmodifiableMap(params); }

    /** Starts or stops recording ops on the tape (while off, the ops only run forward). */
    public void record(boolean on) { recording = on; }

    public boolean recording() { return recording; }

    /** Zeroes every parameter gradient. */
    public void zeroGrad() {
        List<Tensor> gs = new ArrayList<>(params.size());
        for (Parameter p : params.values()) gs.add(p.node.grad);
        ops.zero(gs);
    }

    /**
     * Turns gradient checkpointing on or off (off by default): while on, {@link #checkpoint} segments keep only their
     * input and run again in the backward (segments nested in one run with it).
     */
    public void checkpointing(boolean on) { recomputed = on ? segment -> true : null; }

    /**
     * Gradient checkpointing for the segments {@code recompute} accepts (null: off): they keep only their input and
     * run again in the backward; the others keep their activations (and free everything else when they end), and the
     * segments nested in them are asked in turn. E.g. recomputing a decoder layer's MLP half only, not its attention.
     */
    public void checkpointing(java.util.function.Predicate<String> recompute) { recomputed = recompute; }

    public boolean checkpointing() { return recomputed != null; }

    /** Ops on the tape (for tests and diagnostics). */
    public int tapeLength() { return tape.size(); }

    /**
     * Bytes of activations the tape holds for the backward now: tensors saved by recorded ops (a checkpoint's input
     * included), each buffer once, weights and parameters excluded. Rises during the recorded forward, falls as the
     * backward runs the ops.
     */
    public long savedActivationBytes() { return heldBytes; }

    /** The most {@link #savedActivationBytes} since the last {@link #resetPeakSavedActivationBytes}. */
    public long peakSavedActivationBytes() { return peakHeldBytes; }

    public void resetPeakSavedActivationBytes() { peakHeldBytes = heldBytes; }

    // ---------------------------------------------------------------- loss and backward

    /**
     * Mean cross-entropy of {@code logits [T, vocab]} where row t predicts {@code labels[t + 1]} (transformers'
     * shift; -100 ignored), in float64 accumulation. While recording, the loss gradient (times {@code lossScale},
     * e.g. 1 / accumulation steps) is queued as a seed of the next {@link #backward}.
     */
    public double crossEntropy(Tensor logits, long[] labels, double lossScale) {
        return Losses.crossEntropy(this, logits, labels, lossScale);
    }

    /**
     * {@link #crossEntropy} of the logits {@code h W^T} without them: the rows in chunks of at most 320 MiB of logits
     * (whole 128-row tiles: 512 rows of a 152k vocabulary), each chunk's logits, loss and (while recording) loss
     * gradient and its product with W computed at once and freed, so that the step holds {@code [n, hidden]} (the
     * gradient of h, queued as a seed of the next {@link #backward}) instead of the logits and their gradient
     * {@code [n, vocab]}. W must have no gradient (a frozen LM head).
     */
    public double linearCrossEntropy(Tensor h, Tensor w, long[] labels, double lossScale) {
        return Losses.linearCrossEntropy(this, h, w, labels, lossScale, 80L << 20);
    }

    /** {@link #linearCrossEntropy(Tensor, Tensor, long[], double)} with chunks of about {@code chunkLogits} logits. */
    double linearCrossEntropy(Tensor h, Tensor w, long[] labels, double lossScale, long chunkLogits) {
        return Losses.linearCrossEntropy(this, h, w, labels, lossScale, chunkLogits);
    }

    /** The node of a tensor an op reads (counting the use) while recording, else null: for {@link Losses}. */
    Node recordedNode(Tensor t) { return recording ? node(t) : null; }

    /** Whether {@code t} has a node (a gradient path) now. */
    boolean hasNode(Tensor t) { return nodes.get(t) != null; }

    /** The node of {@code t} without counting a use (a loss seeds its gradient directly). */
    Node nodeOf(Tensor t) { return nodes.get(t); }

    /** Queues a seed of the next {@link #backward}. */
    void seed(Runnable s) { seeds.add(s); }

    GradOps ops() { return ops; }

    /**
     * Runs the tape backwards from the queued loss seeds, accumulating into the parameter gradients, then clears the
     * tape and every activation node (parameters keep their gradients until {@link #zeroGrad}).
     */
    public void backward() {
        try {
            for (Runnable s : seeds) s.run();
            runBackward(tape);
        } finally {
            clearTape();
        }
    }

    /** Runs ops backwards, each one's saved tensors released once it has run. */
    private void runBackward(List<Op> ops) { runBackward(ops, 0, ops.size()); }

    /**
     * Runs ops [lo, hi) backwards. The ops of a recorded segment run in a scope of the backend that frees what their
     * backwards allocated (gradients of the segment's activations, temporaries) when the segment's input has its
     * gradient, which alone is kept.
     */
    private void runBackward(List<Op> ops, int lo, int hi) {
        for (int i = hi - 1; i >= lo; i--) {
            Range r = null;
            for (Range c : ranges.getOrDefault(i + 1, List.of()))   // the outermost segment ending here, inside [lo, hi)
                if (c.from >= lo && !(c.from == lo && i + 1 == hi) && (r == null || c.from < r.from)) r = c;
            if (r != null) {
                Range seg = r;
                int end = i + 1;
                inner.scoped(() -> {
                    runBackward(ops, seg.from, end);
                    return null;
                }, none -> seg.input == null || seg.input.grad == null ? List.of() : List.of(seg.input.grad));
                i = seg.from;
                continue;
            }
            Op op = ops.set(i, null);
            if (op.out.grad != null) {
                op.backward.run();
                if (op.out.param == null) op.out.grad = null;
            }
            release(op);
        }
    }

    /** Forgets the tape and activation nodes without a backward. */
    public void clearTape() {
        for (Op op : tape) if (op != null) release(op);
        tape.clear();
        ranges.clear();
        seeds.clear();
        pending.clear();
        versions.clear();
        swiGluInputs.clear();
        nodes = parameterNodes();
    }

    private IdentityHashMap<Tensor, Node> parameterNodes() {
        IdentityHashMap<Tensor, Node> m = new IdentityHashMap<>();
        for (Parameter p : params.values()) m.put(p.tensor, p.node);
        return m;
    }

    // ---------------------------------------------------------------- gradient checkpointing

    /**
     * While recording, for a segment that checkpointing recomputes: runs {@code fn} without a tape and records one op
     * that keeps only {@code input}; its backward is {@link #recompute}. A segment that reads nothing with a gradient
     * (a frozen block on frozen inputs) leaves nothing on the tape. Any other recorded segment runs on the tape, and
     * what it allocated is freed when it ends except the tensors its ops saved for the backward (the backend's
     * {@link Backend#scoped(java.util.function.Supplier, java.util.function.Function)}), so the forward holds its
     * saved activations and no garbage. Not recording, and inside a recomputed segment, just runs {@code fn}.
     */
    @Override
    public Tensor checkpoint(String segment, Tensor input, UnaryOperator<Tensor> fn) {
        if (!recording || recomputing > 0) return fn.apply(input);
        if (recomputed == null || !recomputed.test(segment)) return keptSegment(input, fn);
        Segment s = new Segment(segment, input, fn);
        Tensor out;
        recording = false;
        running = s;
        try {
            // the segment's activations are not needed after it (the backward re-runs it): a backend may free them now
            out = inner.scoped(() -> fn.apply(input));
        } finally {
            running = null;
            recording = true;
        }
        if (!s.needsBackward) return out;
        Saved kept = new Saved(input);
        if (s.inputNode != null) s.inputNode.uses++;   // the re-run adds to the input's gradient
        push("checkpoint " + segment, out, ny -> recompute(s, kept, ny));
        return out;
    }

    /** Runs a recorded segment in a scope that keeps the activations its ops saved (and its result). */
    private Tensor keptSegment(Tensor input, UnaryOperator<Tensor> fn) {
        int from = tape.size();
        Node in = nodes.get(input);
        Tensor out = inner.scoped(() -> fn.apply(input), y -> {
            List<Tensor> keep = new ArrayList<>();
            for (int i = from; i < tape.size(); i++)
                for (Saved sv : tape.get(i).saved) if (sv.activation && sv.held != null) keep.add(sv.held);
            for (Saved sv : pending) if (sv.activation && sv.held != null) keep.add(sv.held);
            return keep;
        });
        if (tape.size() > from) ranges.computeIfAbsent(tape.size(), k -> new ArrayList<>()).add(new Range(from, in));
        return out;
    }

    /**
     * The backward of a checkpoint: runs the segment again with recording on, into a tape, node map and version map
     * of its own (its input maps to the input's node outside, so the input's gradient lands there; the weights map
     * to their parameters), backpropagates the output's gradient through that tape and drops it.
     */
    private void recompute(Segment s, Saved kept, Node out) {
        kept.check("checkpoint " + s.name);
        List<Op> outerTape = tape;
        Map<Integer, List<Range>> outerRanges = ranges;
        IdentityHashMap<Tensor, Node> outerNodes = nodes;
        IdentityHashMap<Tensor, Integer> outerVersions = versions;
        boolean wasRecording = recording;
        tape = new ArrayList<>();
        ranges = new HashMap<>();
        nodes = parameterNodes();
        versions = new IdentityHashMap<>();
        if (s.inputNode != null) {
            nodes.put(s.input, s.inputNode);
            s.inputNode.grad();   // allocated before the scope below, which frees what the re-run allocates
        }
        recording = true;
        recomputing++;
        try {
            inner.scoped(() -> {
                Tensor y = s.fn.apply(s.input);
                Node ny = nodes.get(y);
                if (ny == null) throw new IllegalStateException("checkpoint " + s.name + ": its re-run has no gradient path");
                if (ny.grad == null && ny.param == null) ny.grad = out.grad;   // nothing else adds to it
                else ops.axpy(ny.grad(), out.grad, 1f);
                runBackward(tape);
                return null;
            });
        } finally {
            recomputing--;
            for (Op op : tape) if (op != null) release(op);
            tape = outerTape;
            ranges = outerRanges;
            nodes = outerNodes;
            versions = outerVersions;
            recording = wasRecording;
        }
    }

    // ---------------------------------------------------------------- helpers

    private int versionOf(Tensor t) { return versions.getOrDefault(t, 0); }

    private void bump(Tensor t) {
        if (running != null && t == running.input)
            throw new IllegalStateException("checkpoint " + running.name + " modifies its input in place");
        if (recording) versions.merge(t, 1, Integer::sum);
    }

    private Node node(Tensor t) {
        if (t == null) return null;
        if (running != null) running.reads(t);
        if (!recording) return null;
        Node n = nodes.get(t);
        if (n != null) n.uses++;
        return n;
    }

    /**
     * Adds {@code g} to {@code n}'s gradient for one of the uses counted by {@link #node}. When it is the last
     * contribution to come and the node has no gradient yet, the node takes {@code g} itself instead of a zeroed
     * copy (no allocation, no pass over memory): from then on nothing writes to it, so {@code g} may also be taken by
     * another node (both sides of an add) or be the gradient an op was handed.
     */
    void contribute(Node n, Tensor g) {
        n.uses--;
        if (n.grad == null && n.param == null && n.uses == 0)
            n.grad = java.util.Arrays.equals(g.shape(), n.shape) ? g : inner.view(g, n.shape);
        else if (n.unwritten()) ops.copy(n.fresh(), g);   // more to come: a copy of its own (no zero-fill and add)
        else ops.axpy(n.grad(), g, 1f);
    }

    private void hold(MemorySegment buf) {
        if (held.merge(buf, 1, Integer::sum) == 1) {
            heldBytes += buf.byteSize();
            peakHeldBytes = Math.max(peakHeldBytes, heldBytes);
        }
    }

    private void release(Op op) {
        for (Saved s : op.saved) {
            if (!s.activation || s.held == null) continue;
            MemorySegment buf = s.held.data();
            if (held.merge(buf, -1, (a, b) -> a + b == 0 ? null : a + b) == null) heldBytes -= buf.byteSize();
        }
    }

    private static boolean any(Node... ns) {
        for (Node n : ns) if (n != null) return true;
        return false;
    }

    /** A new node for {@code out} (replacing any earlier one) with its backward on the tape. */
    private Node push(String name, Tensor out, java.util.function.Consumer<Node> backward) {
        Node n = new Node(out.shape(), null);
        nodes.put(out, n);
        List<Saved> saved = pending.isEmpty() ? List.of() : pending;
        pending = new ArrayList<>();
        tape.add(new Op(name, n, saved, () -> backward.accept(n)));
        return n;
    }

    private static int rows(Tensor t) { return (int) (t.numel() / t.dim(-1)); }

    private static Tensor gradOrNull(Node n) { return n == null ? null : n.grad(); }

    // ---------------------------------------------------------------- Backend

    @Override public Device device() { return inner.device(); }
    @Override
    public Tensor upload(Tensor hostWeight) {
        Tensor w = inner.upload(hostWeight);
        weights.add(w);
        return w;
    }

    @Override public Tensor fromHost(float[] values, long... shape) { return inner.fromHost(values, shape); }
    @Override public float[] toHost(Tensor t) { return inner.toHost(t); }
    @Override public Tensor zeros(long... shape) { return inner.zeros(shape); }
    @Override public Tensor empty(long... shape) { return inner.empty(shape); }

    @Override
    public Tensor linear(Tensor x, Tensor w, Tensor bias) {
        Tensor y = inner.linear(x, w, bias);
        Node nx = node(x), nw = node(w), nb = node(bias);
        if (!any(nx, nw, nb)) return y;
        Saved sx = nw == null ? null : new Saved(x), sw = nx == null ? null : new Saved(w);
        push("linear", y, ny -> {
            if (nx != null) linearDx(ny.grad, sw.values("linear"), nx);
            if (nw != null || nb != null) ops.linearDw(ny.grad, sx == null ? null : sx.values("linear"), gradOrNull(nw), gradOrNull(nb));
        });
        return y;
    }

    /** dx of a product into x's node: written when it is the first contribution, else added. */
    private void linearDx(Tensor dy, Tensor w, Node nx) {
        boolean write = nx.unwritten();
        ops.linearDx(dy, w, write ? nx.fresh() : nx.grad(), !write);
    }

    /** {@code residual + x W^T} as one op (the backend may add in the product's epilogue); backward as linear + add. */
    @Override
    public Tensor addLinear(Tensor residual, Tensor x, Tensor w) {
        Tensor y = inner.addLinear(residual, x, w);
        Node nr = node(residual), nx = node(x), nw = node(w);
        if (!any(nr, nx, nw)) return y;
        Saved sx = nw == null ? null : new Saved(x), sw = nx == null ? null : new Saved(w);
        push("addLinear", y, ny -> {
            if (nx != null) linearDx(ny.grad, sw.values("addLinear"), nx);
            if (nw != null) ops.linearDw(ny.grad, sx.values("addLinear"), nw.grad(), null);
            if (nr != null) contribute(nr, ny.grad);   // last: it may take the gradient itself
        });
        return y;
    }

    @Override
    public Tensor rmsNorm(Tensor x, Tensor w, float eps) {
        Tensor y = inner.rmsNorm(x, w, eps);
        Node nx = node(x), nw = node(w);
        if (!any(nx, nw)) return y;
        Saved sx = new Saved(x, Keep.COMPACT), sw = new Saved(w);
        push("rmsNorm", y, ny -> ops.rmsNorm(ny.grad, sx.raw("rmsNorm"), sw.values("rmsNorm"), eps, gradOrNull(nx), gradOrNull(nw)));
        return y;
    }

    @Override
    public Tensor add(Tensor a, Tensor b) {
        Tensor y = inner.add(a, b);
        Node na = node(a), nb = node(b);
        if (!any(na, nb)) return y;
        push("add", y, ny -> {
            if (na != null) contribute(na, ny.grad);
            if (nb != null) contribute(nb, ny.grad);
        });
        return y;
    }

    @Override
    public Tensor siluMul(Tensor gate, Tensor up) {
        Node ng = node(gate), nu = node(up);
        if (!any(ng, nu)) return inner.siluMul(gate, up);
        // the inputs' compact copies (kept below) written by the forward itself where the backend can
        Tensor y = recomputing == 0 ? ops.siluMulKeepingInputs(inner, gate, up) : inner.siluMul(gate, up);
        Saved sg = new Saved(gate, Keep.COMPACT), su = new Saved(up, Keep.COMPACT);
        // the output need not be kept for a LoRA down-projection's dA when the backend rebuilds it from these two
        if (sg.held != null && su.held != null && ops.rebuildsSwiGlu(sg.held, su.held)) swiGluInputs.put(y, new Saved[]{sg, su});
        push("siluMul", y, ny -> {
            // the gate and up products' outputs usually feed nothing else: their gradients are written, not added
            boolean write = ng != nu && (ng == null || ng.unwritten()) && (nu == null || nu.unwritten());
            ops.siluMul(ny.grad, sg.raw("siluMul"), su.raw("siluMul"), ng == null ? null : write ? ng.fresh() : ng.grad(),
                    nu == null ? null : write ? nu.fresh() : nu.grad(), !write);
        });
        return y;
    }

    @Override
    public Tensor gelu(Tensor x) {
        Tensor y = inner.gelu(x);
        Node nx = node(x);
        if (nx == null) return y;
        Saved sx = new Saved(x);
        push("gelu", y, ny -> ops.gelu(ny.grad, sx.values("gelu"), nx.grad()));
        return y;
    }

    @Override
    public Tensor embedding(Tensor table, int[] ids) {
        Tensor y = inner.embedding(table, ids);
        Node nt = node(table);
        if (nt == null) return y;
        int[] idc = ids.clone();
        push("embedding", y, ny -> ops.addRows(nt.grad(), idc, ny.grad, null, idc.length));
        return y;
    }

    @Override
    public Tensor gatherRows(Tensor x, int[] rowIdx) {
        Tensor y = inner.gatherRows(x, rowIdx);
        Node nx = node(x);
        if (nx == null) return y;
        int[] idx = rowIdx.clone();
        push("gatherRows", y, ny -> ops.addRows(nx.grad(), idx, ny.grad, null, idx.length));
        return y;
    }

    @Override
    public void scatterRows(Tensor dst, int[] rowIdx, Tensor src) {
        Node nd = node(dst), ns = node(src);
        inner.scatterRows(dst, rowIdx, src);
        rowsWritten("scatterRows", dst, rowIdx.clone(), nd, ns);
    }

    @Override
    public void copyRows(Tensor dst, int dstRow, Tensor src) {
        Node nd = node(dst), ns = node(src);
        inner.copyRows(dst, dstRow, src);
        if ((nd != null || ns != null) && src.dim(-1) != dst.dim(-1))
            throw new IllegalArgumentException("copyRows while recording: rows of " + src + " and " + dst + " differ in width");
        int[] idx = new int[rows(src)];
        for (int i = 0; i < idx.length; i++) idx[i] = dstRow + i;
        rowsWritten("copyRows", dst, idx, nd, ns);
    }

    /**
     * Records rows {@code idx} of dst overwritten in place by the rows of a source (node ns): the source's gradient
     * takes those rows of dst's, dst's old value (node nd) the others.
     */
    private void rowsWritten(String name, Tensor dst, int[] idx, Node nd, Node ns) {
        bump(dst);
        if (!any(nd, ns)) {
            if (recording) nodes.remove(dst);
            return;
        }
        int dstRows = rows(dst);
        push(name, dst, ny -> {
            if (ns != null) ops.addRows(ns.grad(), null, ny.grad, idx, idx.length);
            if (nd != null) {
                boolean[] overwritten = new boolean[dstRows];
                for (int r : idx) overwritten[r] = true;
                int[] keep = untouched(overwritten);
                ops.addRows(nd.grad(), keep, ny.grad, keep, keep.length);
            }
        });
    }

    @Override
    public Tensor columns(Tensor x, int from, int to) {
        Tensor y = inner.columns(x, from, to);
        Node nx = node(x);
        if (nx == null) return y;
        push("columns", y, ny -> ops.addColumns(nx.grad(), from, ny.grad));
        return y;
    }

    @Override
    public void rotary(Tensor x, int heads, Tensor cos, Tensor sin) {
        Node nx = node(x);
        inner.rotary(x, heads, cos, sin);
        bump(x);
        if (nx == null) {
            if (recording) nodes.remove(x);
            return;
        }
        Saved sc = new Saved(cos), ss = new Saved(sin);
        push("rotary", x, ny -> {
            boolean write = nx.unwritten();
            ops.rotary(ny.grad, heads, sc.values("rotary"), ss.values("rotary"), write ? nx.fresh() : nx.grad(), !write);
        });
    }

    @Override
    public Tensor attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        Tensor y = inner.attention(q, k, v, kvLen, hq, hkv, mask);
        Node nq = node(q), nk = node(k), nv = node(v);
        if (!any(nq, nk, nv)) return y;
        boolean usesOut = ops.usesAttentionOutput((int) (q.dim(-1) / hq));
        List<Tensor> own = usesOut ? ops.attentionKept(y) : List.of();   // then kept instead of q, k, v and y
        Keep how = own.isEmpty() ? Keep.AS_IS : Keep.IDENTITY;
        for (Tensor t : own) new Saved(t);
        Saved sy = usesOut ? new Saved(y, how) : null;
        Saved sq = new Saved(q, how), sk = new Saved(k, how), sv = new Saved(v, how);
        push("attention", y, ny -> ops.attention(sq.values("attention"), sk.values("attention"), sv.values("attention"),
                kvLen, hq, hkv, mask, sy == null ? null : sy.values("attention"), ny.grad, gradOrNull(nq), gradOrNull(nk),
                gradOrNull(nv)));
        return y;
    }

    @Override
    public Tensor scale(Tensor x, float s) {
        Tensor y = inner.scale(x, s);
        Node nx = node(x);
        if (nx == null) return y;
        push("scale", y, ny -> ops.axpy(nx.grad(), ny.grad, s));
        return y;
    }

    @Override
    public Tensor mul(Tensor a, Tensor b) {
        Tensor y = inner.mul(a, b);
        Node na = node(a), nb = node(b);
        if (!any(na, nb)) return y;
        Saved sa = nb == null ? null : new Saved(a), sb = na == null ? null : new Saved(b);
        push("mul", y, ny -> {
            if (na != null) ops.addProduct(na.grad(), ny.grad, sb.values("mul"));
            if (nb != null) ops.addProduct(nb.grad(), ny.grad, sa.values("mul"));
        });
        return y;
    }

    @Override
    public Tensor view(Tensor x, long... shape) {
        Tensor y = inner.view(x, shape);
        Node nx = node(x);
        if (nx == null) return y;
        push("view", y, ny -> contribute(nx, ny.grad));
        return y;
    }

    /**
     * The LoRA down-projection as one recorded op where the backend fuses it (CUDA: the mask is recomputed in the
     * backward, x itself is what is kept); otherwise the composition of dropout, linear and scale is recorded.
     */
    @Override
    public Tensor loraDown(Tensor x, Tensor a, float scale, float p, long seed) {
        if (!recording) {
            node(x);   // a checkpointed segment's first run notes what it reads
            node(a);
            return inner.loraDown(x, a, scale, p, seed);
        }
        if (!ops.fusesLoraDown((int) a.dim(0))) return Backend.super.loraDown(x, a, scale, p, seed);
        Tensor y = inner.loraDown(x, a, scale, p, seed);
        Node nx = node(x), na = node(a);
        if (!any(nx, na)) return y;
        Saved[] swiGlu = na == null || !ops.rebuildsSwiGluFor((int) a.dim(0)) ? null : swiGluInputs.get(x);
        Saved sx = na == null ? null : new Saved(x, swiGlu != null ? Keep.IDENTITY : Keep.COMPACT), sa = nx == null ? null : new Saved(a);
        push("loraDown", y, ny -> {
            Tensor av = sa == null ? a : sa.values("loraDown");
            if (swiGlu != null) {   // x = siluMul(gate, up), rebuilt from their kept compact copies
                sx.check("loraDown");
                ops.loraDownBackwardOfSwiGlu(ny.grad, swiGlu[0].raw("loraDown"), swiGlu[1].raw("loraDown"), av, scale, p, seed,
                        gradOrNull(nx), gradOrNull(na));
            } else {
                ops.loraDownBackward(ny.grad, sx == null ? null : sx.raw("loraDown"), av, scale, p, seed, gradOrNull(nx), gradOrNull(na));
            }
        });
        return y;
    }

    @Override
    public Tensor dropout(Tensor x, float p, long seed) {
        Tensor y = inner.dropout(x, p, seed);
        Node nx = node(x);
        if (nx == null) return y;
        push("dropout", y, ny -> {
            nx.uses--;
            if (nx.grad == null && nx.param == null && nx.uses == 0) nx.grad = inner.dropout(ny.grad, p, seed);   // the masked copy itself
            else ops.addDropout(nx.grad(), ny.grad, p, seed);
        });
        return y;
    }

    @Override public GradOps gradOps() { return ops; }

    @Override public long peakDeviceBytes() { return inner.peakDeviceBytes(); }

    @Override public Tensor scoped(java.util.function.Supplier<Tensor> body) { return inner.scoped(body); }
    @Override
    public Tensor scoped(java.util.function.Supplier<Tensor> body, java.util.function.Function<Tensor, List<Tensor>> keep) {
        return inner.scoped(body, keep);
    }

    /** The indices of the false entries. */
    private static int[] untouched(boolean[] overwritten) {
        int c = 0;
        for (boolean o : overwritten) if (!o) c++;
        int[] keep = new int[c];
        c = 0;
        for (int r = 0; r < overwritten.length; r++) if (!overwritten[r]) keep[c++] = r;
        return keep;
    }

    @Override
    public void close() { inner.close(); }
}
