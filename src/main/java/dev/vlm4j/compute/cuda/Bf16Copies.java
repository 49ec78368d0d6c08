package dev.vlm4j.compute.cuda;

import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;

/**
 * The bf16 copies of the last few float32 activations that fed (or will feed) bf16 products, by tensor identity, most
 * recent first: a producer that writes its output's copy alongside (RMSNorm, SwiGLU, attention) or a conversion puts
 * it here, and the products that read the activation (q/k/v, gate/up, a LoRA down-projection, a saved compact copy)
 * find it. Several entries, so that converting one tensor (a saved input) does not drop the copy that the next product
 * needs. An entry goes when its tensor (or a view of the same memory) changes in place ({@link #forget}); everything
 * goes when memory may be freed or an in-place operation runs ({@link #clear}).
 */
final class Bf16Copies {
    /** How many copies are kept (VLM4J_CUDA_BF16_COPIES, default 4; 1 = only the last, as before). */
    static final int CAPACITY = Math.max(1, Integer.getInteger("vlm4j.cuda.bf16Copies", DevicePool.intSetting("VLM4J_CUDA_BF16_COPIES", 4)));

    private final Tensor[] sources = new Tensor[CAPACITY];
    private final MemorySegment[] copies = new MemorySegment[CAPACITY];

    /** x's copy, or null. */
    MemorySegment get(Tensor x) {
        for (int i = 0; i < CAPACITY; i++) if (sources[i] == x && x != null) return copies[i];
        return null;
    }

    /** Records {@code copy} as x's (the oldest entry goes when full). */
    void put(Tensor x, MemorySegment copy) {
        forget(x);
        System.arraycopy(sources, 0, sources, 1, CAPACITY - 1);
        System.arraycopy(copies, 0, copies, 1, CAPACITY - 1);
        sources[0] = x;
        copies[0] = copy;
    }

    /** Drops the entries of x and of every tensor sharing memory with it (views): x is about to change in place. */
    void forget(Tensor x) {
        if (x == null) return;
        long lo = x.data().address(), hi = lo + x.data().byteSize();
        int k = 0;
        for (int i = 0; i < CAPACITY; i++) {
            Tensor s = sources[i];
            boolean overlaps = s != null && (s == x || (s.data().address() < hi && lo < s.data().address() + s.data().byteSize()));
            if (s != null && !overlaps) {
                sources[k] = s;
                copies[k++] = copies[i];
            }
        }
        for (int i = k; i < CAPACITY; i++) {
            sources[i] = null;
            copies[i] = null;
        }
    }

    void clear() {
        java.util.Arrays.fill(sources, null);
        java.util.Arrays.fill(copies, null);
    }
}
