package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;

import static dev.vlm4j.compute.cuda.CudaBackend.addr;
import static dev.vlm4j.compute.cuda.CudaBackend.rows;

/**
 * The forward attention kernels of {@link CudaBackend} and which one serves a call: split keys for a few queries over a
 * long cache (decoding), the tensor-core flash kernels or the products for long sequences in bf16 mode
 * ({@link FlashAttention}, {@link ProductAttention}), the tiled float32 kernel for many queries, one query per block
 * otherwise; and the batched decode attention over one cache per sequence.
 */
final class CudaAttention {
    static final int ATT_WARPS = 8, ATT_MAXC = 8;
    /** Split-key attention: used for at most this many queries, keys per split at least SPLIT_CHUNK. */
    private static final int SPLIT_MAX_QUERIES = 16, SPLIT_CHUNK = 256, SPLIT_MAX = 64;
    /** Batched decode attention: keys per split (a block's 8 warps take 8 each, so short caches still fill the GPU). */
    private static final int DECODE_CHUNK = 64;
    static final int FLASH_MIN_QUERIES = 32, FLASH_MAX_D = 128;
    /**
     * Attention over at least this many queries (each segment) runs on the tensor cores in bf16 mode (flash kernels,
     * or batched products where those do not apply); VLM4J_CUDA_GEMM_ATTENTION=0: off.
     */
    private static final int GEMM_ATT_MIN = 1024;

    private final CudaBackend be;
    private final ProductAttention products;
    private final FlashAttention flash;

    CudaAttention(CudaBackend be, ProductAttention products, FlashAttention flash) {
        this.be = be;
        this.products = products;
        this.flash = flash;
    }

    /** Shared memory of the tiled float32 kernel (attention_flash) for head size d. */
    static int flashShared(int d) { return (3 * 64 * d + 64 * 68) * 4; }

    /** {@link dev.vlm4j.compute.Backend#attention} (the backend bound to this thread). */
    Tensor forward(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        int n = rows(q), d = (int) (q.dim(-1) / hq);
        if (d > 32 * ATT_MAXC) throw new IllegalArgumentException("attention: head size " + d + " above " + 32 * ATT_MAXC);
        if (hq % hkv != 0) throw new IllegalArgumentException("attention: " + hq + " query heads over " + hkv + " KV heads");
        int[] seg = mask.segments();
        if (seg != null && (seg[seg.length - 1] != n || kvLen != n))
            throw new IllegalArgumentException("attention segments end at " + seg[seg.length - 1] + " but there are " + n + " queries");
        Tensor qd = be.dev(q), kd = be.dev(k), vd = be.dev(v), y = be.newF32(n, (long) hq * d);
        if (n == 0) return y;
        int shared = ATT_WARPS * (d + 2) * 4;
        float scale = (float) (1.0 / Math.sqrt(d));
        int splits = seg == null && n <= SPLIT_MAX_QUERIES ? Math.min(SPLIT_MAX, kvLen / SPLIT_CHUNK) : 0;
        if (splits >= 2) {
            // few queries over a long cache (decoding): spread the keys over more blocks, then merge
            int chunk = (kvLen + splits - 1) / splits;
            MemorySegment part = be.scratch((long) n * hq * splits * (d + 2) * 4);
            be.launch3("attention_split", n, hq, splits, 32 * ATT_WARPS, shared, addr(qd), addr(kd), addr(vd),
                    part.address(), kvLen, hq, hkv, d, scale, mask.causal() ? 1 : 0, mask.queryOffset(), chunk);
            be.launch("attention_combine", n, hq, 32, 0, part.address(), addr(y), hq, d, splits);
            Reference.reachabilityFence(part);
            return y;
        }
        if (be.gemmAttention && be.tensorCoreFlash(d) && longSegments(seg, n)) {
            MemorySegment yb = be.feedsProducts(n) ? be.scratch(2L * n * hq * d) : null;   // the output projection's operand
            flash.forward(qd, kd, vd, y, yb, kvLen, hq, hkv, mask);
            if (yb != null) be.bf16Copy(y, yb);
            return y;
        }
        if (be.gemmAttention && be.precision() == Precision.BF16 && d % 8 == 0 && longSegments(seg, n) && ProductAttention.fits(n, kvLen, seg)) {
            products.forward(qd, kd, vd, y, kvLen, hq, hkv, mask);
            return y;
        }
        MemorySegment segs = seg == null ? null : be.ints(seg);
        if (be.flashAttention && n >= FLASH_MIN_QUERIES && d % 16 == 0 && d <= FLASH_MAX_D) {
            // many queries (prefill, vision tower): 64-query tiles against 64-key tiles in shared memory
            be.launch("attention_flash", (n + 63) / 64, hq, 256, flashShared(d), addr(qd), addr(kd), addr(vd), addr(y), n,
                    kvLen, hq, hkv, d, scale, segs == null ? 0L : segs.address(), seg == null ? 0 : seg.length - 1,
                    mask.causal() ? 1 : 0, mask.queryOffset());
            Reference.reachabilityFence(segs);
            return y;
        }
        be.launch("attention_f32", n, hq, 32 * ATT_WARPS, shared, addr(qd), addr(kd), addr(vd), addr(y), kvLen, hq, hkv, d,
                scale, segs == null ? 0L : segs.address(), seg == null ? 0 : seg.length - 1,
                mask.causal() ? 1 : 0, mask.queryOffset());
        Reference.reachabilityFence(segs);
        return y;
    }

    /** Whether every segment (or the one sequence) is long enough for the tensor-core forms of attention. */
    private static boolean longSegments(int[] seg, int n) {
        if (seg == null) return n >= GEMM_ATT_MIN;
        for (int s = 0; s + 1 < seg.length; s++) if (seg[s + 1] - seg[s] < GEMM_ATT_MIN) return false;
        return true;
    }

    /** {@link dev.vlm4j.compute.Backend#attentionBatch} with the batched decode kernels. */
    Tensor batch(Tensor q, Tensor[] keys, Tensor[] values, int[] lens, int hq, int hkv) {
        int n = rows(q), d = (int) (q.dim(-1) / hq), w = hkv * d;
        if (keys.length != n || values.length != n || lens.length != n)
            throw new IllegalArgumentException("attentionBatch: " + n + " queries but " + keys.length + " caches");
        if (d > 32 * ATT_MAXC || hq % hkv != 0) throw new IllegalArgumentException("attentionBatch: heads " + hq + "/" + hkv + " of " + d);
        Tensor qd = be.dev(q), y = be.newF32(n, (long) hq * d);
        if (n == 0) return y;
        long[] table = new long[3 * n];
        int maxLen = 0;
        for (int i = 0; i < n; i++) {
            table[i] = addr(be.cacheTensor(keys[i], w, lens[i], "attentionBatch"));
            table[n + i] = addr(be.cacheTensor(values[i], w, lens[i], "attentionBatch"));
            table[2 * n + i] = lens[i];
            maxLen = Math.max(maxLen, lens[i]);
        }
        MemorySegment t = be.longs(table);
        int shared = ATT_WARPS * (d + 2) * 4;
        float scale = (float) (1.0 / Math.sqrt(d));
        // few sequences over long caches: split the keys so that there are enough blocks, then merge. The split is
        // chosen from the longest length rounded up to DECODE_CHUNK (the kernel reads the lengths from the table), so
        // the launch stays the same for DECODE_CHUNK steps and a captured decode step can be replayed
        int bucket = (maxLen + DECODE_CHUNK - 1) / DECODE_CHUNK * DECODE_CHUNK;
        int splits = n * hq >= 1024 ? 1 : Math.min(SPLIT_MAX, Math.max(1, bucket / DECODE_CHUNK));
        if (splits == 1) {
            be.launch3("attention_batch", n, hq, 1, 32 * ATT_WARPS, shared, addr(qd), t.address(), addr(y), n, hq, hkv, d, scale, 0);
        } else {
            int chunk = (bucket + splits - 1) / splits;
            MemorySegment part = be.scratch((long) n * hq * splits * (d + 2) * 4);
            be.launch3("attention_batch", n, hq, splits, 32 * ATT_WARPS, shared, addr(qd), t.address(), part.address(), n, hq, hkv, d,
                    scale, chunk);
            be.launch("attention_combine", n, hq, 32, 0, part.address(), addr(y), hq, d, splits);
            Reference.reachabilityFence(part);
        }
        Reference.reachabilityFence(t);
        return y;
    }
}
