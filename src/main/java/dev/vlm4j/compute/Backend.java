package dev.vlm4j.compute;

import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

/**
 * The small set of operations the Qwen2.5-VL model is written against. The model code (language model and vision
 * tower) calls only these, so a backend (CPU Vector API, CUDA) supplies the speed and the model is written once.
 * <p>
 * Conventions: activations are float32 matrices {@code [rows, cols]} (a token per row); weights are
 * {@code [out, in]} in whatever dtype the backend keeps them (bf16, f32, quantized); results are new tensors unless a
 * method says "in place".
 */
public interface Backend extends AutoCloseable {
    Device device();

    /** Places a host weight on this backend (the CPU keeps memory-mapped weights as they are). */
    Tensor upload(Tensor hostWeight);

    /**
     * Places a vocabulary-sized table (token embeddings, LM head) on this backend. Quantizing backends may keep it
     * at a higher precision than the other weights; by default it is {@link #upload}.
     */
    default Tensor uploadVocabTable(Tensor hostWeight) { return upload(hostWeight); }

    /** A float32 tensor on this backend holding the given values. */
    Tensor fromHost(float[] values, long... shape);

    /** All elements as a host float32 array. */
    float[] toHost(Tensor t);

    /** A zero-filled float32 tensor. */
    Tensor zeros(long... shape);

    /**
     * A float32 tensor whose contents are not defined, for a result an operation then writes in full (a backend may
     * skip zero-filling it; by default it is {@link #zeros}).
     */
    default Tensor empty(long... shape) { return zeros(shape); }

    /** {@code y = x W^T + b}: x {@code [n, in]}, w {@code [out, in]}, bias {@code [out]} or null. */
    Tensor linear(Tensor x, Tensor w, Tensor bias);

    /**
     * Several products of one input ({@code linear(x, ws[i], biases[i])} each; the q/k/v projections). A backend may
     * run them as one launch; by default they are separate {@link #linear} calls.
     */
    default Tensor[] linears(Tensor x, Tensor[] ws, Tensor[] biases) {
        Tensor[] out = new Tensor[ws.length];
        for (int i = 0; i < ws.length; i++) out[i] = linear(x, ws[i], biases[i]);
        return out;
    }

    /** The SwiGLU input half of an MLP, {@code silu(x G^T) * (x U^T)}; by default {@link #siluMul} of two products. */
    default Tensor swiGlu(Tensor x, Tensor gateW, Tensor upW) {
        return siluMul(linear(x, gateW, null), linear(x, upW, null));
    }

    /** {@code residual + x W^T} (a projection back into the residual stream); by default {@link #add} of a product. */
    default Tensor addLinear(Tensor residual, Tensor x, Tensor w) {
        return add(residual, linear(x, w, null));
    }

    /** {@code w * x / sqrt(mean(x^2) + eps)} per row, in float32. */
    Tensor rmsNorm(Tensor x, Tensor w, float eps);

    /** Elementwise {@code a + b} (same shapes). */
    Tensor add(Tensor a, Tensor b);

    /** {@code silu(gate) * up}, elementwise. */
    Tensor siluMul(Tensor gate, Tensor up);

    /** GELU with the exact erf form. */
    Tensor gelu(Tensor x);

    /** Rows {@code ids[i]} of an embedding table {@code [vocab, dim]}, as float32 {@code [ids.length, dim]}. */
    Tensor embedding(Tensor table, int[] ids);

    /** {@code out[i] = x[rows[i]]}. */
    Tensor gatherRows(Tensor x, int[] rows);

    /** In place: {@code dst[rows[i]] = src[i]}. */
    void scatterRows(Tensor dst, int[] rows, Tensor src);

    /** In place: rows {@code [dstRow, dstRow + src.rows)} of dst become src (KV-cache append). */
    void copyRows(Tensor dst, int dstRow, Tensor src);

    /** Columns {@code [from, to)} of a matrix, as a new matrix. */
    Tensor columns(Tensor x, int from, int to);

    /**
     * In place rotary embedding with the rotate-half convention: x {@code [n, heads * d]}, cos/sin {@code [n, d]};
     * for each head, {@code x' = x * cos + rotate_half(x) * sin}, {@code rotate_half([a, b]) = [-b, a]}.
     */
    void rotary(Tensor x, int heads, Tensor cos, Tensor sin);

    /**
     * Scaled dot-product attention with grouped KV heads: q {@code [n, hq * d]}; k, v {@code [>= kvLen, hkv * d]}
     * (only the first kvLen rows are used); query head h reads KV head {@code h / (hq / hkv)}; scale
     * {@code 1/sqrt(d)}. Returns {@code [n, hq * d]}.
     */
    Tensor attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask);

    /**
     * In place, for several tensors at once (the KV caches of a batched decode step): row {@code i} of {@code src}
     * becomes row {@code rows[i]} of {@code dsts[i]}. The default copies row by row; a backend may do it in one go.
     */
    default void appendRows(Tensor[] dsts, int[] rows, Tensor src) {
        if (dsts.length != rows.length || src.dim(0) != dsts.length)
            throw new IllegalArgumentException("appendRows: " + dsts.length + " destinations, " + rows.length + " rows, source " + src);
        for (int i = 0; i < dsts.length; i++) copyRows(dsts[i], rows[i], gatherRows(src, new int[]{i}));
    }

    /**
     * Decode attention for several sequences at once: query row {@code i} of q {@code [B, hq * d]} attends to the
     * first {@code lens[i]} rows of its own cache {@code keys[i]}, {@code values[i]} ({@code [>= lens[i], hkv * d]},
     * grouped KV heads and scale as {@link #attention}); the query is the newest position, so it sees all of them.
     * Returns {@code [B, hq * d]}. The default runs {@link #attention} per sequence; a backend may use one launch.
     */
    default Tensor attentionBatch(Tensor q, Tensor[] keys, Tensor[] values, int[] lens, int hq, int hkv) {
        int b = (int) q.dim(0);
        if (keys.length != b || values.length != b || lens.length != b)
            throw new IllegalArgumentException("attentionBatch: " + b + " queries but " + keys.length + " caches");
        Tensor a = zeros(b, q.dim(-1));
        for (int i = 0; i < b; i++) {
            int[] row = {i};
            scatterRows(a, row, attention(gatherRows(q, row), keys[i], values[i], lens[i], hq, hkv, AttentionMask.causal(lens[i] - 1)));
        }
        return a;
    }

    /**
     * Runs {@code task.accept(0 .. n - 1)}: independent pieces of model work, such as the prefills of several short
     * prompts, each touching only its own state. The default runs them in order; the CPU backend runs them side by
     * side, one per worker, when there are at least as many as workers (their kernels then run on that one worker).
     */
    default void runIndependent(int n, java.util.function.IntConsumer task) {
        for (int i = 0; i < n; i++) task.accept(i);
    }

    /**
     * {@code x W^T} (no bias) on the host, row-major: in {@code into} when it holds all the values (a buffer the
     * caller reuses, e.g. for each decode step's logits; it may be longer), else in a new array. The CPU backend
     * computes straight into it.
     */
    default float[] linearToHost(Tensor x, Tensor w, float[] into) {
        float[] y = toHost(linear(x, w, null));
        if (into == null || into.length < y.length) return y;
        System.arraycopy(y, 0, into, 0, y.length);
        return into;
    }

    /** The column index of the largest value of each row of a matrix (the first one on ties), on the host. */
    default int[] argmaxRows(Tensor x) {
        int cols = (int) x.dim(-1), rows = (int) (x.numel() / cols);
        float[] v = toHost(x);
        int[] out = new int[rows];
        for (int r = 0; r < rows; r++) {
            int best = 0, o = r * cols;
            for (int c = 1; c < cols; c++) if (v[o + c] > v[o + best]) best = c;
            out[r] = best;
        }
        return out;
    }

    /** {@code x * s}, elementwise (a new tensor). */
    default Tensor scale(Tensor x, float s) {
        float[] a = toHost(x);
        for (int i = 0; i < a.length; i++) a[i] *= s;
        return fromHost(a, x.shape());
    }

    /** Elementwise {@code a * b} (same shapes; e.g. a dropout mask). */
    default Tensor mul(Tensor a, Tensor b) {
        float[] x = toHost(a), z = toHost(b);
        if (x.length != z.length) throw new IllegalArgumentException("mul: " + a + " vs " + b);
        for (int i = 0; i < x.length; i++) x[i] *= z[i];
        return fromHost(x, a.shape());
    }

    /**
     * Runs {@code step}, a piece of work the caller repeats with the same shapes (one decode step), under
     * {@code key}. A backend may record the step's operations the first time and replay them afterwards (CUDA graphs);
     * by default it just runs the step. The step must not read results back to the host nor change host-side state
     * before it returns (a backend may run it more than once), and its result is only valid until the next call.
     */
    default <T> T graph(Object key, java.util.function.Supplier<T> step) { return step.get(); }

    /**
     * The same values under another shape with the same element count. Model code reshapes activations only
     * through this method, so a recording backend (autograd) can see the new tensor object.
     */
    default Tensor view(Tensor x, long... shape) { return x.reshape(shape); }

    /**
     * Gives memory the backend caches for reuse (freed activations) back to the system, e.g. when a server goes idle
     * after a burst of large requests. Tensors still in use stay valid. By default nothing is cached.
     */
    default void releaseCachedMemory() {}

    /**
     * Runs {@code fn(input)}: one self-contained piece of the model, such as a decoder layer or a ViT block, whose
     * only differentiable input is {@code input} (besides the weights). A training backend may keep just
     * {@code input} and run {@code fn} again during the backward instead of keeping the piece's activations
     * (gradient checkpointing), so {@code fn} must compute the same result when re-run; it may rewrite scratch
     * tensors such as its KV-cache rows, but must not modify {@code input}. Other backends just call it.
     */
    default Tensor checkpoint(String segment, Tensor input, java.util.function.UnaryOperator<Tensor> fn) {
        return fn.apply(input);
    }

    /** The most device memory in use since the backend started (GPU backends), or -1 where tensors live on the host. */
    default long peakDeviceBytes() { return -1; }

    /**
     * The backward operations on this backend's tensors, for training ({@link GradOps}). By default the host
     * implementation, which needs heap float32 gradients ({@link #zeros} of the CPU backend).
     */
    default GradOps gradOps() { return new dev.vlm4j.compute.cpu.HostGradOps(this); }

    /**
     * Inverted dropout with a mask drawn from {@code seed}: element i is kept (and scaled by {@code 1 / (1 - p)})
     * when {@link #dropoutKeeps dropoutKeeps(seed, i, p)}, else 0. The same seed gives the same mask on every backend,
     * so the backward (the same op on the gradient) and a checkpointed re-run need no stored mask.
     */
    default Tensor dropout(Tensor x, float p, long seed) {
        float[] a = toHost(x);
        int threshold = dropoutThreshold(p);
        float scale = 1f / (1f - p);
        for (int i = 0; i < a.length; i++) a[i] = dropoutBits(seed, i) >= threshold ? a[i] * scale : 0f;
        return fromHost(a, x.shape());
    }

    /** Whether {@link #dropout} with this seed and probability keeps element {@code i}. */
    static boolean dropoutKeeps(long seed, long i, float p) { return dropoutBits(seed, i) >= dropoutThreshold(p); }

    /**
     * The 24-bit draw for element {@code i}: the top bits of MurmurHash3's 32-bit finalizer of
     * {@code (i + 1) * golden + low(seed)}, xor {@code high(seed)} (32-bit arithmetic, cheap on a GPU).
     */
    static int dropoutBits(long seed, long i) {
        int z = (int) (i + 1) * 0x9E3779B9 + (int) seed;
        z ^= (int) (seed >>> 32);
        z ^= z >>> 16;
        z *= 0x85EBCA6B;
        z ^= z >>> 13;
        z *= 0xC2B2AE35;
        z ^= z >>> 16;
        return z >>> 8;
    }

    /** Draws below this value are dropped: {@code round(p * 2^24)}. */
    static int dropoutThreshold(float p) {
        if (!(p >= 0f && p < 1f)) throw new IllegalArgumentException("dropout probability " + p + " outside [0, 1)");
        return Math.round(p * 16777216f);
    }

    /**
     * {@code scale * dropout(x, p, seed) A^T} for a LoRA factor {@code A [r, in]} ({@code p = 0}: no dropout): the
     * rank-r half of a LoRA update. By default the composition of {@link #dropout}, {@link #linear} and
     * {@link #scale}; the CUDA backend fuses the mask into the product (no masked copy of x is written).
     */
    default Tensor loraDown(Tensor x, Tensor a, float scale, float p, long seed) {
        return scale(linear(p > 0 ? dropout(x, p, seed) : x, a, null), scale);
    }

    /**
     * Runs {@code body}, a piece of work whose intermediate tensors are not used after it returns, and gives the memory
     * the backend allocated for it back right away, except the returned tensor's (which may be null). Tensors
     * allocated inside and referenced afterwards by anything other than the result become invalid, so callers keep
     * everything else they need (gradients, caches) allocated outside. The CUDA backend frees device memory this way
     * without waiting for the garbage collector; by default the body just runs.
     */
    default Tensor scoped(java.util.function.Supplier<Tensor> body) { return body.get(); }

    /**
     * As {@link #scoped(java.util.function.Supplier)}, but the tensors {@code keep} names (given the body's result)
     * also stay valid: a recorded forward's activations that a backward will read. By default the body just runs.
     */
    default Tensor scoped(java.util.function.Supplier<Tensor> body, java.util.function.Function<Tensor, java.util.List<Tensor>> keep) {
        return body.get();
    }

    @Override
    default void close() {}
}
