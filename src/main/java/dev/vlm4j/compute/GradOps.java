package dev.vlm4j.compute;

import dev.vlm4j.tensor.Tensor;

/**
 * The backward halves of the {@link Backend} operations, and the optimizer's elementwise work, on one backend's
 * tensors. The autograd ({@code dev.vlm4j.train.autograd.GradBackend}) records the forward through {@link Backend} and
 * runs its backward through these, so training runs wherever the forward runs: the CPU keeps gradients in heap
 * float32 arrays ({@code HostGradOps}), the CUDA backend in device memory.
 * <p>
 * Conventions: gradients are float32 tensors of the backend ({@link Backend#zeros}); every method <em>accumulates</em>
 * ({@code +=}) into the gradient tensors it is given and skips null ones; saved forward tensors (activations, weights)
 * are read as the forward left them. Shapes follow the forward op's documentation in {@link Backend}.
 */
public interface GradOps {
    /** {@code dst += alpha * src}, elementwise over the same number of elements. */
    void axpy(Tensor dst, Tensor src, float alpha);

    /**
     * {@code dst += dropout(g)} with the mask of {@link Backend#dropout}{@code (., p, seed)} (the backward of dropout
     * when the gradient already has other contributions: one pass instead of a masked copy and an add).
     */
    void addDropout(Tensor dst, Tensor g, float p, long seed);

    /** {@code dst += a * b}, elementwise (the backward of {@link Backend#mul}). */
    void addProduct(Tensor dst, Tensor a, Tensor b);

    /** Whether {@link #loraDownBackward} runs for LoRA factors of this rank (else the tape records the composition). */
    default boolean fusesLoraDown(int rank) { return false; }

    /**
     * The backward of {@link dev.vlm4j.compute.Backend#loraDown}, fused: {@code da += scale * dh^T dropout(x)} and
     * {@code dx += scale * dropout(dh A)} with the forward's mask (either gradient null: not wanted). Only where
     * {@link #fusesLoraDown} says so.
     */
    default void loraDownBackward(Tensor dh, Tensor x, Tensor a, float scale, float p, long seed, Tensor dx, Tensor da) {
        throw new UnsupportedOperationException("no fused LoRA backward here");
    }

    /**
     * Whether {@link #loraDownBackwardOfSwiGlu} can rebuild a SwiGLU output from the compact forms of its inputs (the
     * forward's compact copy of the output, bit for bit), so that a training step need not keep that output.
     */
    default boolean rebuildsSwiGlu(Tensor gateCompact, Tensor upCompact) { return false; }

    /** Whether {@link #loraDownBackwardOfSwiGlu} takes a factor of this rank. */
    default boolean rebuildsSwiGluFor(int rank) { return false; }

    /** {@link #loraDownBackward} of {@code x = siluMul(gate, up)}, x rebuilt from gate's and up's compact forms. */
    default void loraDownBackwardOfSwiGlu(Tensor dh, Tensor gateCompact, Tensor upCompact, Tensor a, float scale, float p, long seed,
                                          Tensor dx, Tensor da) {
        throw new UnsupportedOperationException("no SwiGLU rebuild here");
    }

    /** Backward of {@link Backend#linear} to its input: {@code dx[n, in] += dy[n, out] W[out, in]} (W as the backend keeps it). */
    void linearDx(Tensor dy, Tensor w, Tensor dx);

    /**
     * {@link #linearDx} that writes dx ({@code dx = dy W}, its old contents ignored) when {@code accumulate} is false:
     * the first contribution to a gradient needs no zero-filled tensor to add to.
     */
    default void linearDx(Tensor dy, Tensor w, Tensor dx, boolean accumulate) {
        if (!accumulate) zero(dx);
        linearDx(dy, w, dx);
    }

    /** Backward of {@link Backend#linear} to its weight and bias: {@code dw[out, in] += dy^T x}, {@code db[out] += sum_rows dy}. */
    void linearDw(Tensor dy, Tensor x, Tensor dw, Tensor db);

    /** Backward of {@link Backend#rmsNorm} (x, w as in the forward). */
    void rmsNorm(Tensor dy, Tensor x, Tensor w, float eps, Tensor dx, Tensor dw);

    /**
     * The forward {@code be.siluMul(gate, up)} of a recorded op whose backward keeps gate and up {@link #compact}: a
     * backend may write their compact copies in the same pass (compact then finds them instead of converting).
     */
    default Tensor siluMulKeepingInputs(Backend be, Tensor gate, Tensor up) { return be.siluMul(gate, up); }

    /** Backward of {@link Backend#siluMul}. */
    void siluMul(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp);

    /** {@link #siluMul} that writes dGate and dUp (either may be null) instead of adding when {@code accumulate} is false. */
    default void siluMul(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp, boolean accumulate) {
        if (!accumulate) {
            if (dGate != null) zero(dGate);
            if (dUp != null) zero(dUp);
        }
        siluMul(dy, gate, up, dGate, dUp);
    }

    /** Backward of {@link Backend#gelu} (exact erf form). */
    void gelu(Tensor dy, Tensor x, Tensor dx);

    /**
     * {@code dst[dstRows[i]] += src[srcRows[i]]} for {@code i < count}, rows of {@code dst.dim(-1)} values; a null
     * index array means {@code 0..count-1}. Repeated destination rows sum (the backward of {@link Backend#embedding},
     * {@link Backend#gatherRows}, {@link Backend#scatterRows}, {@link Backend#copyRows}).
     */
    void addRows(Tensor dst, int[] dstRows, Tensor src, int[] srcRows, int count);

    /** {@code dx[:, from + j] += dy[:, j]} (the backward of {@link Backend#columns}). */
    void addColumns(Tensor dx, int from, Tensor dy);

    /** Backward of the in-place {@link Backend#rotary}: {@code dx += R^T dy} for the forward's cos/sin. */
    void rotary(Tensor dy, int heads, Tensor cos, Tensor sin, Tensor dx);

    /** {@link #rotary} that writes dx instead of adding to it when {@code accumulate} is false. */
    default void rotary(Tensor dy, int heads, Tensor cos, Tensor sin, Tensor dx, boolean accumulate) {
        if (!accumulate) zero(dx);
        rotary(dy, heads, cos, sin, dx);
    }

    /** {@code dst = src} (same number of elements). */
    default void copy(Tensor dst, Tensor src) {
        zero(dst);
        axpy(dst, src, 1f);
    }

    /**
     * Backward of {@link Backend#attention} with the same arguments (the mask's segments, causality, query offset and
     * grouped KV heads): {@code dq}, {@code dk}, {@code dv} (shaped as q, k, v; only the first kvLen rows of dk/dv).
     */
    void attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor dOut,
                   Tensor dq, Tensor dk, Tensor dv);

    /**
     * Whether {@link #attention(Tensor, Tensor, Tensor, int, int, int, AttentionMask, Tensor, Tensor, Tensor, Tensor, Tensor)}
     * can use the forward's output for heads of size {@code headSize} (so that a tape keeps it for the backward).
     */
    default boolean usesAttentionOutput(int headSize) { return false; }

    /**
     * The buffers the backend kept next to this attention output when they are everything the backward handed that
     * output reads of it and of the queries, keys and values (so that a tape keeps these instead, and of q, k, v and
     * the output only their identities); empty otherwise.
     */
    default java.util.List<Tensor> attentionKept(Tensor out) { return java.util.List.of(); }

    /**
     * The form in which an activation saved for a backward is kept (e.g. bf16 where the backend computes its products
     * in bf16), or {@code t} itself; {@link #expand} gives back a float32 tensor for the backward. The backwards of
     * {@link #rmsNorm}, {@link #siluMul} and {@link #loraDownBackward} also take the saved inputs in this form.
     */
    default Tensor compact(Tensor t) { return t; }

    /** A float32 tensor with the values of {@code c} from {@link #compact} ({@code c} itself when it is one). */
    default Tensor expand(Tensor c) { return c; }

    /**
     * The backward of attention given also the forward's output {@code out} for these same arguments (unchanged since;
     * null when not kept): a backend that kept state from that forward (a FlashAttention log-sum-exp) then need not run
     * the forward again.
     */
    default void attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor out,
                           Tensor dOut, Tensor dq, Tensor dk, Tensor dv) {
        attention(q, k, v, kvLen, hq, hkv, mask, dOut, dq, dk, dv);
    }

    /**
     * Cross-entropy of the rows of {@code logits [rows, vocab]} against {@code targets[row]} (-1: the row has no
     * loss). The returned {@link Loss} has the summed loss and computes the gradient later.
     */
    Loss crossEntropy(Tensor logits, int[] targets);

    /** A computed cross-entropy: the sum over rows with a target of {@code logsumexp(row) - row[target]}. */
    interface Loss {
        double sum();

        int count();

        /** {@code dLogits += scale * (softmax(row) - onehot(target))} on rows with a target. */
        void backward(Tensor dLogits, double scale);
    }

    /**
     * One AdamW update of {@code p} from {@code g} with moments {@code m}, {@code v} (torch.optim.AdamW):
     * {@code m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p = p (1 - lr wd) - lr (m / bc1) / (sqrt(v / bc2) + eps)}.
     */
    void adamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps,
               double weightDecay, double bc1, double bc2);

    /**
     * {@link #adamW(Tensor, Tensor, Tensor, Tensor, double, double, double, double, double, double, double)} for several
     * parameters with the same hyper-parameters (a backend may do them in one pass).
     */
    default void adamW(java.util.List<Tensor> p, java.util.List<Tensor> g, java.util.List<Tensor> m, java.util.List<Tensor> v,
                       double lr, double beta1, double beta2, double eps, double weightDecay, double bc1, double bc2) {
        for (int i = 0; i < p.size(); i++) adamW(p.get(i), g.get(i), m.get(i), v.get(i), lr, beta1, beta2, eps, weightDecay, bc1, bc2);
    }

    /** {@link #scale(Tensor, double)} of several tensors (a backend may do them in one pass). */
    default void scale(java.util.List<Tensor> gs, double s) {
        for (Tensor g : gs) scale(g, s);
    }

    /** The sum of squares of the elements, in float64 on the host. */
    double sumSquares(Tensor g);

    /** The sum of squares of all elements of several tensors (a global gradient norm); a backend may read it back once. */
    default double sumSquares(java.util.List<Tensor> gs) {
        double s = 0;
        for (Tensor g : gs) s += sumSquares(g);
        return s;
    }

    /** In place: {@code g *= s} (each product rounded once to float32). */
    void scale(Tensor g, double s);

    /** In place: every element becomes 0. */
    void zero(Tensor g);

    /** {@link #zero} of several tensors (a backend may do it in one launch). */
    default void zero(java.util.List<Tensor> gs) {
        for (Tensor g : gs) zero(g);
    }

    /** In place: the tensor's float32 elements become {@code values} (same count). */
    void copyFromHost(Tensor dst, float[] values);
}
