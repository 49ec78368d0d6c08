package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.lang.ref.Reference;
import java.nio.ByteOrder;

import static dev.vlm4j.compute.cuda.CudaBackend.addr;
import static dev.vlm4j.compute.cuda.CudaBackend.rows;

/**
 * {@link GradOps} on the GPU: gradients, optimizer moments and trainable parameters are float32 device tensors;
 * products go through cuBLASLt accumulating into the gradient ({@code beta = 1}), with bf16 operands where the frozen
 * weights are bf16; everything elementwise through {@code train_kernels.cu}. Attention's backward is
 * {@link ProductAttention}. Sums that leave the device (the loss, squared norms) are finished in float64 on the host.
 */
final class CudaGradOps implements GradOps {
    private static final int BLOCK = 256;
    private static final ValueLayout.OfDouble F64 = ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final CudaBackend be;
    private final ProductAttention attention;

    private final FlashAttention flash;

    CudaGradOps(CudaBackend be, ProductAttention attention, FlashAttention flash) {
        this.flash = flash;
        this.be = be;
        this.attention = attention;
    }

    /** A float32 tensor on this device that gradients are written into. */
    private Tensor grad(Tensor t, String op) {
        if (t == null) return null;
        if (!be.device().equals(t.device()) || t.dtype() != DType.F32)
            throw new IllegalArgumentException(op + ": gradients must be float32 tensors on " + be.device() + ", got " + t);
        be.modifies(t);
        return t;
    }

    private static long ptr(Tensor t) { return t == null ? 0L : addr(t); }

    private static void sameSize(Tensor a, Tensor b, String op) {
        if (a.numel() != b.numel()) throw new IllegalArgumentException(op + ": " + a + " and " + b + " differ in size");
    }

    // ---- forward ops the training path uses (CudaBackend delegates here) ----

    /** {@link dev.vlm4j.compute.Backend#dropout} with the same seeded mask as the host default. */
    Tensor dropout(Tensor x, float p, long seed) {
        be.bind();
        int threshold = dev.vlm4j.compute.Backend.dropoutThreshold(p);
        Tensor xd = be.dev(x), y = be.newF32(x.shape());
        be.elementwise("dropout_f32", x.numel(), addr(xd), addr(y), x.numel(), seed, threshold, 1f / (1f - p));
        return y;
    }

    /** {@code x * s}. */
    Tensor scaled(Tensor x, float s) {
        be.bind();
        Tensor xd = be.dev(x), y = be.newF32(x.shape());
        be.elementwise("scale_copy_f32", x.numel(), addr(xd), addr(y), s, x.numel());
        return y;
    }

    /** {@code a * b}, elementwise. */
    Tensor product(Tensor a, Tensor b) {
        be.bind();
        sameSize(a, b, "mul");
        Tensor ad = be.dev(a), bd = be.dev(b), y = be.newF32(a.shape());
        be.elementwise("mul_f32", a.numel(), addr(ad), addr(bd), addr(y), a.numel());
        return y;
    }

    /** LoRA ranks up to this run through the fused down-projection kernels (VLM4J_CUDA_FUSED_LORA=0: none). */
    static final int FUSED_LORA_MAX_RANK = "0".equals(System.getenv("VLM4J_CUDA_FUSED_LORA")) ? 0 : 16;

    @Override
    public boolean fusesLoraDown(int rank) { return rank <= FUSED_LORA_MAX_RANK; }

    /** {@code scale * dropout(x) A^T} without a masked copy of x (lora_down_part + sum_parts_f32), the mask drawn on the fly. */
    Tensor loraDown(Tensor x, Tensor a, float scale, float p, long seed) {
        be.bind();
        int r = (int) a.dim(0), in = (int) a.dim(1), n = rows(x);
        if (x.dim(-1) != in || a.dtype() != DType.F32)
            throw new IllegalArgumentException("loraDown: x " + x + " does not fit the float32 factor " + a);
        Tensor xd = be.dev(x), ad = be.dev(a);
        long[] shape = x.shape().clone();
        shape[shape.length - 1] = r;
        Tensor h = be.newF32(shape);
        if (n == 0) return h;
        int threshold = p > 0 ? dev.vlm4j.compute.Backend.dropoutThreshold(p) : 0;
        // from x's bf16 copy when its producer wrote one (bf16 mode: the frozen product beside reads the same rounded values)
        MemorySegment xb = WIDE && in % 8 == 0 ? be.cachedBf16(xd) : null;
        downInto(addr(xd), xb == null ? 0 : xb.address(), addr(ad), false, n, in, r, seed, threshold, h,
                scale * (p > 0 ? 1f / (1f - p) : 1f), false);
        Reference.reachabilityFence(xb);
        return h;
    }

    /** VLM4J_CUDA_LORA_WIDE=0: the LoRA kernels without the wide (16- and 8-byte) loads, as before them. */
    static final boolean WIDE = !"0".equals(System.getenv("VLM4J_CUDA_LORA_WIDE"));

    /**
     * Whether the wide LoRA kernels add their chunks' and parts' sums straight into the result with atomics (as the
     * flash backward adds dQ, dK, dV: the order of the additions, so the last bits, may differ between runs) instead of
     * writing partial sums that a second kernel adds in order. VLM4J_CUDA_LORA_ATOMIC=0: in order (deterministic);
     * tests switch it per backend.
     */
    boolean atomicSums = !"0".equals(System.getenv("VLM4J_CUDA_LORA_ATOMIC"));

    /**
     * {@code dst (+)= factor * mask * x A^T} ({@code dst [n, r]}, written when not {@code accumulate}): x float32 at
     * {@code x}, or bf16 at {@code xb} when not 0 (then in % 8 == 0); A {@code [r, in]}, or given transposed
     * ({@code [in, r]}, bf16 x only) when {@code at}. Resident blocks, 2 per SM, walk over row pairs of 512-column
     * chunks; the chunks' sums are added atomically ({@link #atomicSums}) or summed in order by sum_parts_f32.
     */
    private void downInto(long x, long xb, long a, boolean at, int n, int in, int r, long seed, int threshold, Tensor dst,
                          float factor, boolean accumulate) {
        int chunks = (in + 511) / 512;
        int grid = Math.max(1, Math.min((n + 15) / 16, 2 * be.multiprocessors() / chunks));
        if (xb != 0 && atomicSums) {
            if (!accumulate) zero(dst);
            be.launch("lora_down_stream8", grid, chunks, BLOCK, r * 512 * 4, xb, a, 0L, n, in, r, seed, threshold, at ? 1 : 0,
                    addr(dst), factor);
            return;
        }
        MemorySegment part = be.scratch((long) chunks * n * r * 4);
        if (xb != 0)
            be.launch("lora_down_stream8", grid, chunks, BLOCK, r * 512 * 4, xb, a, part.address(), n, in, r, seed, threshold, at ? 1 : 0,
                    0L, 0f);
        else if (!at)
            be.launch("lora_down_stream", grid, chunks, BLOCK, r * 512 * 4, x, a, part.address(), n, in, r, seed, threshold);
        else
            throw new IllegalArgumentException("a transposed factor needs bf16 x");
        be.elementwise("sum_parts_f32", (long) n * r, part.address(), addr(dst), chunks, (long) n * r, factor, accumulate ? 1 : 0);
        Reference.reachabilityFence(part);
    }

    /**
     * {@code dst += factor * dh^T mask x} ({@code dst [r, in]}, or {@code [in, r]} when {@code transposed}) over row parts
     * (one wave of resident blocks, at most 256 rows a part): x {@code [n, in]} float32 or bf16, dh {@code [n, r]} float32;
     * with {@code up} not null x = silu(xd) * up rebuilt from the two bf16 tensors (lora_down_da4_swiglu). The parts' sums
     * are added atomically by the wide kernel ({@link #atomicSums}) or summed in order by sum_parts(_t)_f32.
     */
    private void daInto(Tensor xd, Tensor up, long dh, int n, int in, int r, long seed, int threshold, Tensor dst, float factor,
                        boolean transposed) {
        boolean four = WIDE && xd.dtype() == DType.BF16 && r <= 8 && in % 4 == 0;
        if (up != null && !four) throw new IllegalArgumentException("a SwiGLU rebuild needs bf16 operands, rank <= 8, in % 4 == 0");
        int threads = four ? 128 : BLOCK, colBlocks = four ? (in / 4 + threads - 1) / threads : (in + BLOCK - 1) / BLOCK;
        int parts = Math.max((n + 255) / 256, Math.min(Math.max(1, n / 32), Math.max(1, 3 * be.multiprocessors() / colBlocks)));
        int per = (n + parts - 1) / parts;
        parts = (n + per - 1) / per;
        boolean atomic = four && atomicSums;
        MemorySegment part = atomic ? null : be.scratch((long) parts * r * in * 4);
        long pa = part == null ? 0L : part.address(), da = atomic ? addr(dst) : 0L;
        if (up != null)
            be.launch("lora_down_da4_swiglu", colBlocks, parts, threads, per * 8 * 4, addr(xd), addr(up), dh, pa, n, in, r, per,
                    seed, threshold, da, factor, transposed ? 1 : 0);
        else if (four)
            be.launch("lora_down_da4_bf16", colBlocks, parts, threads, per * 8 * 4, addr(xd), dh, pa, n, in, r, per, seed, threshold,
                    da, factor, transposed ? 1 : 0);
        else
            be.launch(xd.dtype() == DType.BF16 ? "lora_down_da_part2_bf16" : "lora_down_da_part2", colBlocks, parts, BLOCK, per * 16 * 4,
                    addr(xd), dh, pa, n, in, r, per, seed, threshold);
        if (atomic) return;
        if (transposed) be.elementwise("sum_parts_t_f32", (long) r * in, pa, addr(dst), parts, r, in, factor, 1);
        else be.elementwise("sum_parts_f32", (long) r * in, pa, addr(dst), parts, (long) r * in, factor, 1);
        Reference.reachabilityFence(part);
    }

    @Override
    public boolean rebuildsSwiGlu(Tensor gateCompact, Tensor upCompact) {
        long[] r = be.swiGluRounded;   // the last SwiGLU forward computed its output from exactly these copies
        return WIDE && r != null && gateCompact.dtype() == DType.BF16 && upCompact.dtype() == DType.BF16 && gateCompact.dim(-1) % 4 == 0
                && gateCompact.numel() == upCompact.numel() && addr(gateCompact) == r[0] && addr(upCompact) == r[1];
    }

    @Override
    public boolean rebuildsSwiGluFor(int rank) { return rank <= 8; }

    @Override
    public void loraDownBackwardOfSwiGlu(Tensor dh, Tensor gateCompact, Tensor upCompact, Tensor a, float scale, float p, long seed,
                                         Tensor dx, Tensor da) {
        if (gateCompact.dtype() != DType.BF16 || upCompact.dtype() != DType.BF16 || gateCompact.dim(-1) % 4 != 0 || a.dim(0) > 8)
            throw new IllegalArgumentException("loraDownBackwardOfSwiGlu: gate " + gateCompact + ", up " + upCompact + ", factor " + a);
        loraDownBackward(dh, gateCompact, upCompact, a, scale, p, seed, dx, da);
    }

    @Override
    public void loraDownBackward(Tensor dh, Tensor x, Tensor a, float scale, float p, long seed, Tensor dx, Tensor da) {
        loraDownBackward(dh, x, null, a, scale, p, seed, dx, da);
    }

    /** With {@code up} not null, x is the SwiGLU output rebuilt from the compact x (its gate) and up. */
    private void loraDownBackward(Tensor dh, Tensor x, Tensor up, Tensor a, float scale, float p, long seed, Tensor dx, Tensor da) {
        be.bind();
        int r = (int) a.dim(0), in = (int) a.dim(1), n = rows(dh);
        if (r > FUSED_LORA_MAX_RANK || dh.dim(-1) != r) throw new IllegalArgumentException("loraDownBackward: dh " + dh + " for factor " + a);
        int threshold = p > 0 ? dev.vlm4j.compute.Backend.dropoutThreshold(p) : 0;
        float factor = scale * (p > 0 ? 1f / (1f - p) : 1f);
        Tensor g = be.dev(dh);
        if (da != null && n > 0) {
            grad(da, "loraDownBackward");
            daInto(activation(x), up, addr(g), n, in, r, seed, threshold, da, factor, false);
        }
        if (dx != null && n > 0) {
            grad(dx, "loraDownBackward");
            Tensor ad = be.dev(a);
            if (WIDE && r <= 8 && in % 4 == 0 && ((addr(dx) | addr(ad)) & 15) == 0)
                be.launch("lora_down_dx4", (in / 4 + BLOCK - 1) / BLOCK, (n + 31) / 32, BLOCK, 0, addr(ad), addr(g), addr(dx), n, in, r,
                        seed, threshold, factor);
            else
                be.launch("lora_down_dx", (in + BLOCK - 1) / BLOCK, (n + 31) / 32, BLOCK, 0, addr(ad), addr(g), addr(dx), n, in, r,
                        seed, threshold, factor);
        }
    }

    // ---- GradOps ----

    @Override
    public void axpy(Tensor dst, Tensor src, float alpha) {
        be.bind();
        grad(dst, "axpy");
        sameSize(dst, src, "axpy");
        Tensor s = be.dev(src);
        be.elementwise("axpy_f32", dst.numel(), addr(dst), addr(s), alpha, dst.numel());
    }

    @Override
    public void addDropout(Tensor dst, Tensor g, float p, long seed) {
        be.bind();
        grad(dst, "addDropout");
        sameSize(dst, g, "addDropout");
        Tensor s = be.dev(g);
        be.elementwise("add_dropout_f32", dst.numel(), addr(dst), addr(s), dst.numel(), seed,
                dev.vlm4j.compute.Backend.dropoutThreshold(p), 1f / (1f - p));
    }

    @Override
    public void addProduct(Tensor dst, Tensor a, Tensor b) {
        be.bind();
        grad(dst, "addProduct");
        sameSize(dst, a, "addProduct");
        sameSize(dst, b, "addProduct");
        Tensor x = be.dev(a), z = be.dev(b);
        be.elementwise("add_product_f32", dst.numel(), addr(dst), addr(x), addr(z), dst.numel());
    }

    @Override
    public void linearDx(Tensor dy, Tensor w, Tensor dx) { linearDx(dy, w, dx, true); }

    /** With {@code accumulate} false the product's beta is 0: dx is written without being read (no zero-fill needed). */
    @Override
    public void linearDx(Tensor dy, Tensor w, Tensor dx, boolean accumulate) {
        be.bind();
        float beta = accumulate ? 1f : 0f;
        grad(dx, "linearDx");
        Tensor wd = be.upload(w), g = be.dev(dy);
        int n = rows(g), out = (int) g.dim(-1), in = (int) wd.dim(1);
        if (wd.dim(0) != out || dx.numel() != (long) n * in)
            throw new IllegalArgumentException("linearDx: dy " + dy + ", weight " + w + ", dx " + dx);
        if (n == 0) return;
        // column-major: dx^T (in x n) += W^T (in x out, W row-major as stored) * dy^T (out x n)
        CublasLt.Operand a = new CublasLt.Operand(false, in, out, in, 0), b = new CublasLt.Operand(false, out, n, out, 0),
                c = new CublasLt.Operand(false, in, n, in, 0);
        if (wd.dtype() == DType.BF16) {
            MemorySegment gb = be.bf16Of(g);
            be.blas.batched(addr(wd), a, gb.address(), b, addr(dx), c, 1, CublasLt.CUDA_R_16BF, CublasLt.CUDA_R_32F, 1f, beta, be.stream);
            Reference.reachabilityFence(gb);
        } else if (wd.dtype() == DType.F32 && lowRank(in, n) && WIDE && out % 8 == 0) {
            // a LoRA up-projection's dh = dy B: the down-projection kernel over dy's bf16 copy (made for the frozen
            // product's dx) with B as the transposed factor, one pass at the bandwidth
            MemorySegment gb = be.bf16Of(g);
            downInto(0, gb.address(), addr(wd), true, n, out, in, 0L, 0, dx, 1f, accumulate);
            Reference.reachabilityFence(gb);
        } else if (wd.dtype() == DType.F32 && lowRank(in, n)) {
            // a LoRA up-projection's dh: bf16 operands (dy's copy, made for the frozen product's dx, and B rounded)
            MemorySegment gb = be.bf16Of(g), wb = roundedCopy(wd);
            be.blas.batched(wb.address(), a, gb.address(), b, addr(dx), c, 1, CublasLt.CUDA_R_16BF, CublasLt.CUDA_R_32F, 1f, beta, be.stream);
            Reference.reachabilityFence(gb);
            Reference.reachabilityFence(wb);
        } else if (wd.dtype() == DType.F32) {
            be.blas.batched(addr(wd), a, addr(g), b, addr(dx), c, 1, CublasLt.CUDA_R_32F, CublasLt.CUDA_R_32F, 1f, beta, be.stream);
        } else {
            throw new IllegalArgumentException("linearDx: weights of dtype " + wd.dtype());
        }
    }

    /**
     * Whether a float32 product of an {@code in}-wide input over n rows is a LoRA up-projection to run on bf16
     * operands: bf16 mode, a rank-sized input (at most 64, a multiple of 8 for the operands' alignment) and more rows
     * than decoding has. Its backward then reads dy's bf16 copy (half the bytes of the float32 dy) as the frozen
     * product's does, accumulating in float32 (as torch's bf16 autocast does for these products).
     */
    private boolean lowRank(int in, int n) {
        return LOW_RANK_BF16 && be.precision() == Precision.BF16 && in <= 64 && in % 8 == 0 && n > 16;
    }

    /** VLM4J_CUDA_LORA_BF16=0 keeps the LoRA up-projections' backward in float32 (for comparisons). */
    static final boolean LOW_RANK_BF16 = !"0".equals(System.getenv("VLM4J_CUDA_LORA_BF16"));

    /** A bf16 copy of a small float32 tensor (scratch; not the backend's cached copy, which dy holds). */
    private MemorySegment roundedCopy(Tensor t) {
        MemorySegment c = be.scratch(Math.max(16, 2 * t.numel()));
        be.toBf16(addr(t), c.address(), t.numel());
        return c;
    }

    @Override
    public void linearDw(Tensor dy, Tensor x, Tensor dw, Tensor db) {
        be.bind();
        Tensor g = be.dev(dy);
        int n = rows(g), out = (int) g.dim(-1);
        if (n == 0) return;
        if (dw != null) {
            grad(dw, "linearDw");
            Tensor xd = be.dev(x);
            int in = (int) xd.dim(-1);
            if (rows(xd) != n || dw.numel() != (long) out * in)
                throw new IllegalArgumentException("linearDw: dy " + dy + ", x " + x + ", dw " + dw);
            // column-major: dW^T (in x out) += X^T (in x n) * dY (n x out), dY stored as out x n
            CublasLt.Operand a = new CublasLt.Operand(false, in, n, in, 0), b = new CublasLt.Operand(true, out, n, out, 0),
                    c = new CublasLt.Operand(false, in, out, in, 0);
            if (xd.dtype() == DType.F32 && lowRank(in, n) && WIDE && in <= 8 && out % 4 == 0) {
                // a LoRA B's gradient dB += dy^T h: the dA kernel over dy's bf16 copy, summed transposed
                MemorySegment gb = be.bf16Of(g);
                daInto(new Tensor(DType.BF16, g.shape(), gb, be.device()), null, addr(xd), n, out, in, 0L, 0, dw, 1f, true);
                Reference.reachabilityFence(gb);
            } else if (xd.dtype() == DType.F32 && lowRank(in, n)) {   // a LoRA B's gradient: bf16 dy (as linearDx) and rounded h
                MemorySegment gb = be.bf16Of(g), xb = roundedCopy(xd);
                be.blas.batched(xb.address(), a, gb.address(), b, addr(dw), c, 1, CublasLt.CUDA_R_16BF, CublasLt.CUDA_R_32F, 1f, 1f, be.stream);
                Reference.reachabilityFence(gb);
                Reference.reachabilityFence(xb);
            } else {
                be.blas.batched(addr(xd), a, addr(g), b, addr(dw), c, 1, CublasLt.CUDA_R_32F, CublasLt.CUDA_R_32F, 1f, 1f, be.stream);
            }
        }
        if (db != null) {
            grad(db, "linearDw");
            be.launch("column_sums_f32", (out + BLOCK - 1) / BLOCK, 1, BLOCK, 0, addr(g), addr(db), n, out);
        }
    }

    @Override
    public void rmsNorm(Tensor dy, Tensor x, Tensor w, float eps, Tensor dx, Tensor dw) {
        be.bind();
        grad(dx, "rmsNorm");
        grad(dw, "rmsNorm");
        Tensor g = be.dev(dy), xd = activation(x), wd = be.upload(w);
        if (wd.dtype() != DType.F32) throw new IllegalArgumentException("rmsNorm backward: weight " + w);
        int d = (int) xd.dim(-1), n = rows(xd);
        if (n > 0) be.launch(xd.dtype() == DType.BF16 ? "rms_norm_backward_bf16" : "rms_norm_backward", n, 1, BLOCK, 0, addr(g), addr(xd),
                addr(wd), ptr(dx), ptr(dw), d, eps);
    }

    @Override
    public Tensor siluMulKeepingInputs(dev.vlm4j.compute.Backend b, Tensor gate, Tensor up) {
        boolean compacted = be.precision() == Precision.BF16 && gate.numel() >= compactMin();
        return b == be ? be.siluMul(gate, up, compacted) : b.siluMul(gate, up);
    }

    @Override
    public void siluMul(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp) { siluMul(dy, gate, up, dGate, dUp, true); }

    @Override
    public void siluMul(Tensor dy, Tensor gate, Tensor up, Tensor dGate, Tensor dUp, boolean accumulate) {
        be.bind();
        grad(dGate, "siluMul");
        grad(dUp, "siluMul");
        Tensor g = be.dev(dy), a = activation(gate), u = activation(up);
        if (a.dtype() != u.dtype()) { a = expand(a); u = expand(u); }
        long n = g.numel();
        if (a.dtype() == DType.BF16 && dGate != null && dUp != null && n % 4 == 0 && be.feedsProducts(rows(g))
                && ((addr(g) | addr(a) | addr(u) | addr(dGate) | addr(dUp)) & 15) == 0) {
            // the gradients' bf16 copies too (the products' backward reads dy as bf16), cached for bf16Of
            MemorySegment gb = be.scratch(2 * n), ub = be.scratch(2 * n);
            be.elementwise("silu_mul_backward_bf16_x4", n / 4, addr(g), addr(a), addr(u), addr(dGate), addr(dUp), gb.address(),
                    ub.address(), n / 4, accumulate ? 1 : 0);
            be.bf16Copy(dGate, gb);
            be.bf16Copy(dUp, ub);
            return;
        }
        be.elementwise(a.dtype() == DType.BF16 ? "silu_mul_backward_bf16" : "silu_mul_backward", g.numel(), addr(g), addr(a), addr(u),
                ptr(dGate), ptr(dUp), g.numel(), accumulate ? 1 : 0);
    }

    @Override
    public void gelu(Tensor dy, Tensor x, Tensor dx) {
        be.bind();
        grad(dx, "gelu");
        Tensor g = be.dev(dy), xd = be.dev(x);
        be.elementwise("gelu_backward", g.numel(), addr(g), addr(xd), addr(dx), g.numel());
    }

    @Override
    public void addRows(Tensor dst, int[] dstRows, Tensor src, int[] srcRows, int count) {
        be.bind();
        grad(dst, "addRows");
        if (count == 0) return;
        int w = (int) dst.dim(-1), nd = rows(dst), ns = rows(src);
        if (src.dim(-1) != w) throw new IllegalArgumentException("addRows: rows of " + src + " and " + dst + " differ in width");
        for (int i = 0; i < count; i++) {
            int dr = dstRows == null ? i : dstRows[i], sr = srcRows == null ? i : srcRows[i];
            if (dr < 0 || dr >= nd || sr < 0 || sr >= ns) throw new IllegalArgumentException("addRows: row " + dr + " <- " + sr);
        }
        Tensor s = be.dev(src);
        MemorySegment di = dstRows == null ? null : be.ints(dstRows), si = srcRows == null ? null : be.ints(srcRows);
        be.launch("add_rows_f32", count, CudaBackend.colBlocks(w), BLOCK, 0, addr(dst), di == null ? 0L : di.address(),
                addr(s), si == null ? 0L : si.address(), w);
        Reference.reachabilityFence(di);
        Reference.reachabilityFence(si);
    }

    @Override
    public void addColumns(Tensor dx, int from, Tensor dy) {
        be.bind();
        grad(dx, "addColumns");
        Tensor g = be.dev(dy);
        int w = (int) g.dim(-1), n = rows(g), dw = (int) dx.dim(-1);
        if (rows(dx) != n || from < 0 || from + w > dw) throw new IllegalArgumentException("addColumns: " + dy + " at " + from + " of " + dx);
        if (n > 0 && w > 0) be.launch("add_columns_f32", n, CudaBackend.colBlocks(w), BLOCK, 0, addr(dx), addr(g), dw, from, w);
    }

    @Override
    public void rotary(Tensor dy, int heads, Tensor cos, Tensor sin, Tensor dx) { rotary(dy, heads, cos, sin, dx, true); }

    /** Also writes dx's bf16 copy (the q/k products' backward operand) where products read bf16 (cached for bf16Of). */
    @Override
    public void rotary(Tensor dy, int heads, Tensor cos, Tensor sin, Tensor dx, boolean accumulate) {
        be.bind();
        grad(dx, "rotary");
        Tensor g = be.dev(dy), c = be.dev(cos), s = be.dev(sin);
        int n = rows(g), d = (int) c.dim(-1);
        if (g.dim(-1) != (long) heads * d) throw new IllegalArgumentException("rotary backward: " + dy + " is not " + heads + " heads of " + d);
        if (n == 0) return;
        MemorySegment xb = be.feedsProducts(n) ? be.scratch(2 * dx.numel()) : null;
        be.launch("rotary_backward2", n, heads, Math.min(BLOCK, Math.max(32, d / 2)), 0, addr(g), addr(c), addr(s), addr(dx),
                xb == null ? 0L : xb.address(), heads, d, accumulate ? 1 : 0);
        if (xb != null) be.bf16Copy(dx, xb);
    }

    @Override
    public void copy(Tensor dst, Tensor src) {
        be.bind();
        grad(dst, "copy");
        sameSize(dst, src, "copy");
        Tensor s = be.dev(src);
        if (dst.numel() > 0) be.copyDeviceAsync(addr(dst), addr(s), 4 * dst.numel());
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor dOut,
                          Tensor dq, Tensor dk, Tensor dv) {
        attention(q, k, v, kvLen, hq, hkv, mask, null, dOut, dq, dk, dv);
    }

    @Override
    public boolean usesAttentionOutput(int headSize) { return be.tensorCoreFlash(headSize); }

    @Override
    public java.util.List<Tensor> attentionKept(Tensor out) { return flash.keptFor(out); }

    /**
     * Activations of at least this many elements are kept in bf16 for a backward in bf16 mode, smaller ones as they
     * are (system property {@code vlm4j.cuda.compactMin}, read at each call: tests lower it).
     */
    static long compactMin() { return Long.getLong("vlm4j.cuda.compactMin", 1 << 16); }

    /** In bf16 mode a large float32 activation as bf16 (its producer's bf16 copy when there is one). */
    @Override
    public Tensor compact(Tensor t) {
        if (be.precision() != Precision.BF16 || t.dtype() != DType.F32 || t.numel() < compactMin() || !be.device().equals(t.device()))
            return t;
        return new Tensor(DType.BF16, t.shape(), be.bf16Of(t), be.device());
    }

    /** A saved activation as the kernels read it: a device bf16 tensor from {@link #compact} as it is, else float32 on the device. */
    private Tensor activation(Tensor t) {
        return t.dtype() == DType.BF16 && be.device().equals(t.device()) ? t : be.dev(t);
    }

    @Override
    public Tensor expand(Tensor c) {
        if (c.dtype() != DType.BF16 || !be.device().equals(c.device())) return c;
        be.bind();
        Tensor y = be.newF32(c.shape());
        be.elementwise("bf16_to_f32_kernel", c.numel(), addr(c), addr(y), c.numel());
        return y;
    }

    @Override
    public void attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor out,
                          Tensor dOut, Tensor dq, Tensor dk, Tensor dv) {
        be.bind();
        grad(dq, "attention");
        grad(dk, "attention");
        grad(dv, "attention");
        if (be.tensorCoreFlash((int) (q.dim(-1) / hq)))
            flash.backward(be.dev(q), be.dev(k), be.dev(v), kvLen, hq, hkv, mask, out == null ? null : be.dev(out), be.dev(dOut), dq, dk, dv);
        else
            attention.backward(be.dev(q), be.dev(k), be.dev(v), kvLen, hq, hkv, mask, be.dev(dOut), dq, dk, dv);
    }

    @Override
    public Loss crossEntropy(Tensor logits, int[] targets) {
        be.bind();
        be.noSyncInStep("crossEntropy");
        Tensor l = be.dev(logits);
        int vocab = (int) l.dim(-1), n = rows(l);
        if (targets.length != n) throw new IllegalArgumentException(n + " logit rows but " + targets.length + " targets");
        int count = 0;
        for (int t : targets) {
            if (t >= vocab) throw new IllegalArgumentException("label " + t + " outside the vocabulary of " + vocab);
            if (t >= 0) count++;
        }
        MemorySegment tg = be.ints(targets);
        Tensor lse = be.newF32(Math.max(1, n)), loss = be.newF32(Math.max(1, n));
        if (n > 0) be.launch("cross_entropy_forward", n, 1, 1024, 0, addr(l), tg.address(), addr(lse), addr(loss), vocab);
        float[] rowLoss = be.toHost(loss);
        double sum = 0;
        for (int r = 0; r < n; r++) if (targets[r] >= 0) sum += rowLoss[r];
        double total = sum;
        int cnt = count;
        return new Loss() {
            @Override public double sum() { return total; }
            @Override public int count() { return cnt; }

            @Override
            public void backward(Tensor dLogits, double scale) {
                be.bind();
                grad(dLogits, "crossEntropy");
                sameSize(dLogits, l, "crossEntropy");
                int chunks = Math.max(1, Math.min(64, (vocab + BLOCK * 8 - 1) / (BLOCK * 8)));
                if (n > 0) be.launch("cross_entropy_backward", n, chunks, BLOCK, 0, addr(l), tg.address(), addr(lse), addr(dLogits),
                        vocab, (float) scale);
            }
        };
    }

    @Override
    public void adamW(Tensor p, Tensor g, Tensor m, Tensor v, double lr, double beta1, double beta2, double eps,
                      double weightDecay, double bc1, double bc2) {
        adamW(java.util.List.of(p), java.util.List.of(g), java.util.List.of(m), java.util.List.of(v), lr, beta1, beta2, eps,
                weightDecay, bc1, bc2);
    }

    /** Several parameters in one launch (adamw_multi_f32), element by element as torch.optim.AdamW. */
    @Override
    public void adamW(java.util.List<Tensor> ps, java.util.List<Tensor> gs, java.util.List<Tensor> ms, java.util.List<Tensor> vs,
                      double lr, double beta1, double beta2, double eps, double weightDecay, double bc1, double bc2) {
        be.bind();
        int count = ps.size();
        if (count == 0) return;
        if (count > MULTI_MAX) {   // the grid's y dimension holds the tensors
            for (int a = 0; a < count; a += MULTI_MAX) {
                int b = Math.min(count, a + MULTI_MAX);
                adamW(ps.subList(a, b), gs.subList(a, b), ms.subList(a, b), vs.subList(a, b), lr, beta1, beta2, eps, weightDecay, bc1, bc2);
            }
            return;
        }
        long[] table = new long[5 * count];
        long most = 0;
        for (int i = 0; i < count; i++) {
            Tensor p = ps.get(i), g = be.dev(gs.get(i)), m = ms.get(i), v = vs.get(i);
            grad(p, "adamW");
            grad(m, "adamW");
            grad(v, "adamW");
            sameSize(p, g, "adamW");
            sameSize(p, m, "adamW");
            sameSize(p, v, "adamW");
            table[5 * i] = addr(p);
            table[5 * i + 1] = addr(g);
            table[5 * i + 2] = addr(m);
            table[5 * i + 3] = addr(v);
            table[5 * i + 4] = p.numel();
            most = Math.max(most, p.numel());
        }
        MemorySegment t = be.longs(table);
        be.launch("adamw_multi_f32", multiBlocks(most), count, BLOCK, 0, t.address(), (float) lr, (float) beta1, (float) (1 - beta1),
                (float) beta2, (float) (1 - beta2), (float) eps, (float) (1 - lr * weightDecay), (float) bc1, (float) bc2);
        Reference.reachabilityFence(t);
    }

    /** Most tensors in one multi-tensor launch (grid y). */
    private static final int MULTI_MAX = 4096;

    /** Blocks per tensor of a multi-tensor launch: enough for the largest, at most 64 (they stride). */
    private static int multiBlocks(long most) { return (int) Math.max(1, Math.min(64, (most + BLOCK - 1) / BLOCK)); }

    private MemorySegment sizesTable(java.util.List<Tensor> gs) {
        long[] table = new long[2 * gs.size()];
        for (int i = 0; i < gs.size(); i++) {
            Tensor g = be.dev(gs.get(i));
            table[2 * i] = addr(g);
            table[2 * i + 1] = g.numel();
        }
        return be.longs(table);
    }

    @Override
    public void scale(java.util.List<Tensor> gs, double s) { multi("scale_multi_f32", "scale", gs, (float) s); }

    /** One launch for up to MULTI_MAX tensors (zeroGrad before a step: one memset each cost the idle GPU ~6 ms of launches). */
    @Override
    public void zero(java.util.List<Tensor> gs) { multi("zero_multi_f32", "zero", gs); }

    /** An in-place kernel over every gradient of gs ({pointer, count} table; extra arguments after it), MULTI_MAX a launch. */
    private void multi(String kernel, String op, java.util.List<Tensor> gs, Object... extra) {
        be.bind();
        if (gs.isEmpty()) return;
        if (gs.size() > MULTI_MAX) {
            for (int a = 0; a < gs.size(); a += MULTI_MAX) multi(kernel, op, gs.subList(a, Math.min(gs.size(), a + MULTI_MAX)), extra);
            return;
        }
        long most = 0;
        for (Tensor g : gs) {
            grad(g, op);
            most = Math.max(most, g.numel());
        }
        MemorySegment t = sizesTable(gs);
        Object[] args = new Object[1 + extra.length];
        args[0] = t.address();
        System.arraycopy(extra, 0, args, 1, extra.length);
        be.launch(kernel, multiBlocks(most), gs.size(), BLOCK, 0, args);
        Reference.reachabilityFence(t);
    }

    @Override
    public double sumSquares(Tensor g) { return sumSquares(java.util.List.of(g)); }

    /** One launch over all tensors, one partial-sum buffer and a single read-back (a sync per tensor costs more than the sums). */
    @Override
    public double sumSquares(java.util.List<Tensor> gs) {
        be.bind();
        be.noSyncInStep("sumSquares");
        if (gs.isEmpty()) return 0;
        if (gs.size() > MULTI_MAX) {
            double sum = 0;
            for (int a = 0; a < gs.size(); a += MULTI_MAX) sum += sumSquares(gs.subList(a, Math.min(gs.size(), a + MULTI_MAX)));
            return sum;
        }
        long most = 0;
        for (Tensor g : gs) most = Math.max(most, g.numel());
        if (most == 0) return 0;
        int blocks = (int) Math.min(256, (most + BLOCK - 1) / BLOCK), total = blocks * gs.size();
        MemorySegment part = be.scratch(8L * total), t = sizesTable(gs);
        be.launch("sum_squares_multi_f32", blocks, gs.size(), BLOCK, 0, t.address(), part.address());
        double s = 0;
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(8L * total, 8);
            be.synchronize();
            be.drv.copyDtoH(h, part.address(), 8L * total);
            for (int i = 0; i < total; i++) s += h.get(F64, 8L * i);
        }
        Reference.reachabilityFence(part);
        Reference.reachabilityFence(t);
        return s;
    }

    @Override
    public void scale(Tensor g, double s) { scale(java.util.List.of(g), s); }

    @Override
    public void zero(Tensor g) {
        be.bind();
        grad(g, "zero");
        if (g.numel() > 0) be.drv.memsetAsync(addr(g), (byte) 0, g.numel() * 4, be.stream);
    }

    @Override
    public void copyFromHost(Tensor dst, float[] values) {
        be.bind();
        grad(dst, "copyFromHost");
        if (dst.numel() != values.length) throw new IllegalArgumentException(values.length + " values for " + dst);
        if (values.length > 0) be.copyIn(addr(dst), MemorySegment.ofArray(values), values.length * 4L);
    }
}
