package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;

import static dev.vlm4j.compute.cuda.CudaBackend.addr;
import static dev.vlm4j.compute.cuda.CudaBackend.rows;

/**
 * Attention on the tensor cores without materialised scores (bf16 mode), forward and backward in the manner of
 * FlashAttention-2 ({@code flash_kernels.cu}; for head sizes {@link #V2_HEAD_SIZES} by default the kernels of
 * {@code flash2_kernels.cu}, a module of their own, with larger warp tiles and 128-key backward blocks): the float32 operands are rounded to bf16 once, tiles stream through
 * shared memory, products accumulate in float32, the softmax is online, and the backward rebuilds each tile of
 * probabilities from the forward's per-query log-sum-exp. Grouped KV heads are read in place (no expanded copies);
 * the mask semantics (segments, causality, query offset) are {@link dev.vlm4j.compute.Backend#attention}'s.
 * <p>
 * A forward keeps its log-sum-exp and bf16 operands next to its output (weakly, until the output is collected), so that
 * a backward handed that output for the same arguments skips running the forward and the conversions again. Head sizes {@link #HEAD_SIZES}.
 */
final class FlashAttention {
    /** The head sizes the kernels are instantiated for. */
    static final int[] HEAD_SIZES = {16, 32, 64, 80, 96, 128};
    private static final int KEYS_PER_BLOCK = 64, THREADS = 128;
    /** Warps of a forward block, 16 queries each (VLM4J_FLASH_FWD_WARPS: 4 or 8). */
    private static final int FWD_WARPS = "8".equals(System.getenv("VLM4J_FLASH_FWD_WARPS")) ? 8 : 4;
    /** The head sizes {@code flash2_kernels.cu} is instantiated for. */
    static final int[] V2_HEAD_SIZES = {64, 128};
    /** Whether the second kernels run where they exist (VLM4J_FLASH_V2=0: the first ones everywhere). */
    static final boolean V2 = !"0".equals(System.getenv("VLM4J_FLASH_V2"));
    /**
     * The second kernels: forward blocks of 4 warps x 32 queries; backward blocks of 8 warps x 128 keys.
     */
    private static final int V2_FWD_QUERIES = 128, V2_FWD_THREADS = 128, V2_BWD_KEYS = 128, V2_BWD_THREADS = 256;

    /** The entry points of the flash kernel module. */
    static List<String> names() {
        List<String> n = new ArrayList<>(List.of("flash_dvec", "flash_dvec_bf16"));
        for (int d : HEAD_SIZES) {
            n.add("flash_fwd_" + d);
            n.add("flash_bwd_" + d);
        }
        return n;
    }

    /** The entry points of the second flash kernel module ({@code flash2_kernels.cu}). */
    static List<String> names2() {
        List<String> n = new ArrayList<>();
        for (int d : V2_HEAD_SIZES) {
            n.add("flash_fwd2_" + d);
            n.add("flash_bwd2_" + d);
        }
        return n;
    }

    /** A forward's log-sum-exp and the arguments it was computed for (identities: the backward checks them). */
    private record Kept(MemorySegment lse, MemorySegment qb, MemorySegment kb, MemorySegment vb, MemorySegment yb, Tensor q, Tensor k,
                        Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        boolean matches(Tensor q2, Tensor k2, Tensor v2, int kvLen2, int hq2, int hkv2, AttentionMask m) {
            return q == q2 && k == k2 && v == v2 && kvLen == kvLen2 && hq == hq2 && hkv == hkv2 && mask.causal() == m.causal()
                    && mask.queryOffset() == m.queryOffset() && java.util.Arrays.equals(mask.segments(), m.segments());
        }
    }

    private final CudaBackend be;
    private final Map<Tensor, Kept> kept = new WeakHashMap<>();
    private long reused, recomputed;
    /**
     * Whether this instance runs the second kernels where they exist ({@link #V2} unless set otherwise: probes and tests
     * compare the two on one device). They also need the backend to have loaded them ({@code be.flashV2}).
     */
    boolean v2 = V2;

    FlashAttention(CudaBackend be) { this.be = be; }

    FlashAttention(CudaBackend be, boolean v2) {
        this.be = be;
        this.v2 = v2;
    }

    /** Whether head size d runs the second kernels here. */
    boolean usesV2(int d) {
        if (!v2 || !be.flashV2) return false;
        for (int s : V2_HEAD_SIZES) if (s == d) return true;
        return false;
    }

    static boolean supports(int d) {
        for (int s : HEAD_SIZES) if (s == d) return true;
        return false;
    }

    /** Shared memory of the forward kernel: two stages of a K and a V tile [64][d+8], bf16. */
    static int forwardShared(int d) { return 4 * 64 * (d + 8) * 2; }

    /** Shared memory of the backward kernel: K and V tiles, two stages of Q and dO [32][d+8], dS, per-query arrays. */
    static int backwardShared(int d) { return (2 * 64 * (d + 8) + 4 * 32 * (d + 8) + 32 * 72) * 2 + 4 * 64 * 4; }

    /** Shared memory of the second forward kernel: the query tile [128][d+8], two stages of K and V tiles [64][d+8], key ranges. */
    static int forwardShared2(int d) { return (128 + 4 * 64) * (d + 8) * 2 + (2 * 128 + 2 * 4) * 4; }

    /**
     * Shared memory of the second backward kernel: K and V tiles [128][d+8], two stages of Q and dO [64][d+8], P^T and
     * dS^T [128][72], per-query arrays.
     */
    static int backwardShared2(int d) { return (2 * 128 * (d + 8) + 4 * 64 * (d + 8) + 2 * 128 * 72) * 2 + 4 * 2 * 64 * 4; }

    /** Sets the dynamic shared memory limits the second kernels need (more than some devices allow: then they stay off). */
    /** Loads a kernel module: its source and prebuilt PTX resource names, its entry points. */
    interface ModuleLoader { void load(String source, String ptx, List<String> names); }

    /**
     * Loads the flash modules and sets their shared memory limits; returns whether the first kernels and the second
     * (whose backward needs 174 KiB of shared memory per block) can run on this device.
     */
    static boolean[] load(CudaDriver drv, ModuleLoader loader, java.util.function.Function<String, MemorySegment> fn) {
        boolean[] on = {true, true};
        loader.load(Kernels.FLASH_SOURCE, Kernels.FLASH_PTX, names());
        try {
            configure(drv, fn);
        } catch (CudaException e) {
            on[0] = false;   // less shared memory per block than the backward kernel needs
        }
        try {
            loader.load(Kernels.FLASH2_SOURCE, Kernels.FLASH2_PTX, names2());
            configure2(drv, fn);
        } catch (CudaException e) {
            on[1] = false;
        }
        return on;
    }

    static void configure2(CudaDriver drv, java.util.function.Function<String, MemorySegment> fn) {
        for (int d : V2_HEAD_SIZES) {
            drv.setFunctionAttribute(fn.apply("flash_bwd2_" + d), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    backwardShared2(d));
            drv.setFunctionAttribute(fn.apply("flash_fwd2_" + d), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    forwardShared2(d));
        }
    }

    /** Sets the dynamic shared memory limits the kernels need (above the default 48 KiB). */
    static void configure(CudaDriver drv, java.util.function.Function<String, MemorySegment> fn) {
        for (int d : HEAD_SIZES) {
            drv.setFunctionAttribute(fn.apply("flash_bwd_" + d), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    backwardShared(d));
            drv.setFunctionAttribute(fn.apply("flash_fwd_" + d), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    forwardShared(d));
        }
    }

    /**
     * The buffers a forward kept next to its output {@code y}, as tensors (log-sum-exp, bf16 queries, keys, values and
     * output), when they are all a backward handed {@code y} reads of q, k, v and y; else none.
     */
    java.util.List<Tensor> keptFor(Tensor y) {
        Kept f = kept.get(y);
        if (f == null || f.yb == null) return java.util.List.of();
        Device dev = be.device();
        int n = rows(f.q), kw = (int) f.k.dim(-1);
        return java.util.List.of(new Tensor(DType.F32, new long[]{f.lse.byteSize() / 4}, f.lse, dev),
                new Tensor(DType.BF16, new long[]{n, f.q.dim(-1)}, f.qb, dev), new Tensor(DType.BF16, new long[]{f.kvLen, kw}, f.kb, dev),
                new Tensor(DType.BF16, new long[]{f.kvLen, kw}, f.vb, dev), new Tensor(DType.BF16, new long[]{n, y.dim(-1)}, f.yb, dev));
    }

    /** How many backwards reused a kept forward and how many ran the forward again (for tests and profiles). */
    long[] counts() { return new long[]{reused, recomputed}; }

    private static int headSize(Tensor q, int hq) { return (int) (q.dim(-1) / hq); }

    /**
     * The first rows of x {@code [>= rows, width]} float32 as bf16: the copy x's producer left (rotary) if there is
     * one, else a conversion into scratch.
     */
    private MemorySegment bf16(Tensor x, int rows) {
        MemorySegment cached = be.cachedBf16(x);
        if (cached != null) return cached;
        long count = (long) rows * x.dim(-1);
        MemorySegment out = be.scratch(Math.max(4, 2 * count));
        be.toBf16(addr(x), out.address(), count);
        return out;
    }

    private MemorySegment segments(AttentionMask mask) {
        int[] seg = mask.segments();
        return seg == null ? null : be.ints(seg);
    }

    /**
     * The forward into y {@code [n, hq d]} (every row written), also as bf16 into yb when not null; keeps its
     * log-sum-exp and bf16 operands for a backward.
     */
    void forward(Tensor q, Tensor k, Tensor v, Tensor y, MemorySegment yb, int kvLen, int hq, int hkv, AttentionMask mask) {
        int n = rows(q), d = headSize(q, hq);
        if (n == 0) return;
        MemorySegment lse = be.scratch(4L * hq * n), qb = bf16(q, n), kb = bf16(k, kvLen), vb = bf16(v, kvLen);
        run(qb, kb, vb, y, yb, lse, n, d, kvLen, hq, hkv, mask);
        kept.put(y, new Kept(lse, qb, kb, vb, yb, q, k, v, kvLen, hq, hkv, mask));
    }

    /** The forward kernel alone, on bf16 operands (lse may be null). */
    void run(MemorySegment qb, MemorySegment kb, MemorySegment vb, Tensor y, MemorySegment yb, MemorySegment lse, int n,
             int d, int kvLen, int hq, int hkv, AttentionMask mask) {
        MemorySegment seg = segments(mask);
        boolean two = usesV2(d);
        int queries = two ? V2_FWD_QUERIES : 16 * FWD_WARPS;
        int blocks = (n + queries - 1) / queries;   // the second kernel's grid is (heads, blocks)
        be.launch((two ? "flash_fwd2_" : "flash_fwd_") + d, two ? hq : blocks, two ? blocks : hq, two ? V2_FWD_THREADS : 32 * FWD_WARPS,
                two ? forwardShared2(d) : forwardShared(d),
                qb.address(), kb.address(), vb.address(), addr(y), yb == null ? 0L : yb.address(), lse == null ? 0L : lse.address(),
                n, kvLen, hq, hkv,
                (float) (1.0 / Math.sqrt(d)), seg == null ? 0L : seg.address(), seg == null ? 0 : mask.segments().length - 1,
                mask.causal() ? 1 : 0, mask.queryOffset());
        Reference.reachabilityFence(seg);
    }

    /**
     * The backward: accumulates into dq {@code [n, hq d]}, dk and dv {@code [>= kvLen, hkv d]} (any may be null).
     * {@code out} is the forward's output for these arguments when the caller kept it (else null): with its kept
     * log-sum-exp the forward is not run again. Then FlashAttention-2's {@code D = rowsum(dO O)} and one pass over
     * key tiles.
     */
    void backward(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor out, Tensor dOut,
                  Tensor dq, Tensor dk, Tensor dv) {
        int n = rows(q), d = headSize(q, hq);
        if (n == 0 || kvLen == 0 || (dq == null && dk == null && dv == null)) return;
        MemorySegment ob = bf16(dOut, n), qb, kb, vb;
        Kept f = out == null ? null : kept.get(out);
        Tensor o;
        MemorySegment lse;
        boolean bf16Out = false;
        if (f != null && f.matches(q, k, v, kvLen, hq, hkv, mask)) {   // the forward's output, log-sum-exp and operands
            o = out;
            bf16Out = f.yb != null;   // then only the kept copies are read (the caller need not keep q, k, v, out)
            lse = f.lse;
            qb = f.qb;
            kb = f.kb;
            vb = f.vb;
            reused++;
        } else {
            qb = bf16(q, n);
            kb = bf16(k, kvLen);
            vb = bf16(v, kvLen);
            o = be.newF32(n, (long) hq * d);
            lse = be.scratch(4L * hq * n);
            run(qb, kb, vb, o, null, lse, n, d, kvLen, hq, hkv, mask);
            recomputed++;
        }
        MemorySegment dvec = be.scratch(4L * hq * n);
        long warps = (long) n * hq;
        be.launch(bf16Out ? "flash_dvec_bf16" : "flash_dvec", (int) ((warps * 32 + 255) / 256), 1, 256, 0, addr(dOut),
                bf16Out ? f.yb.address() : addr(o), dvec.address(), n, hq, d);
        runBackward(qb, kb, vb, ob, lse, dvec, dq, dk, dv, n, d, kvLen, hq, hkv, mask);
        for (MemorySegment m : new MemorySegment[]{qb, kb, vb, ob, lse, dvec}) Reference.reachabilityFence(m);
        Reference.reachabilityFence(o);
    }

    /** The backward kernel alone, on bf16 operands, the forward's log-sum-exp and FlashAttention-2's D (dvec). */
    void runBackward(MemorySegment qb, MemorySegment kb, MemorySegment vb, MemorySegment ob, MemorySegment lse, MemorySegment dvec,
                     Tensor dq, Tensor dk, Tensor dv, int n, int d, int kvLen, int hq, int hkv, AttentionMask mask) {
        MemorySegment seg = segments(mask);
        boolean two = usesV2(d);
        int keys = two ? V2_BWD_KEYS : KEYS_PER_BLOCK;
        int blocks = (kvLen + keys - 1) / keys;   // the second kernel's grid is (heads, blocks)
        be.launch((two ? "flash_bwd2_" : "flash_bwd_") + d, two ? hq : blocks, two ? blocks : hq, two ? V2_BWD_THREADS : THREADS,
                two ? backwardShared2(d) : backwardShared(d),
                qb.address(), kb.address(), vb.address(), ob.address(), lse.address(), dvec.address(),
                dq == null ? 0L : addr(dq), dk == null ? 0L : addr(dk), dv == null ? 0L : addr(dv), n, kvLen, hq, hkv,
                (float) (1.0 / Math.sqrt(d)), seg == null ? 0L : seg.address(), seg == null ? 0 : mask.segments().length - 1,
                mask.causal() ? 1 : 0, mask.queryOffset());
        Reference.reachabilityFence(seg);
    }
}
