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

    /** {@code y = x W^T + b}: x {@code [n, in]}, w {@code [out, in]}, bias {@code [out]} or null. */
    Tensor linear(Tensor x, Tensor w, Tensor bias);

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
     * The same values under another shape with the same element count. Model code reshapes activations only
     * through this method, so a recording backend (autograd) can see the new tensor object.
     */
    default Tensor view(Tensor x, long... shape) { return x.reshape(shape); }

    @Override
    default void close() {}
}
