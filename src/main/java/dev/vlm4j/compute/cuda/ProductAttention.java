package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.lang.ref.Reference;

import static dev.vlm4j.compute.cuda.CudaBackend.addr;
import static dev.vlm4j.compute.cuda.CudaBackend.rows;

/**
 * Attention as strided-batched products on the tensor cores, forward and backward, with the mask semantics of
 * {@link dev.vlm4j.compute.Backend#attention}: per segment (or the whole sequence) and per group of heads,
 * {@code S = scale Q K^T} (float32), {@code P = softmax(S)} over the keys each query may see (causal: keys up to
 * {@code queryOffset + i}), {@code O = P V}; the backward recomputes P, then {@code dV = P^T dO},
 * {@code dP = dO V^T}, {@code dS = P (dP - rowsum(P dP))}, {@code dQ += scale dS K}, {@code dK = scale dS^T Q}.
 * Grouped KV heads are expanded to the query heads for the products and their gradients summed back.
 * <p>
 * In bf16 mode the operands (Q, K, V, dO, P, dS) are bf16 and the products accumulate in float32, as a bf16 model's
 * attention does in transformers; in float32 mode everything is float32. Score matrices are materialised one head
 * group at a time (at most {@link #SCORE_BYTES} of float32 scores), which suits sequences of a few thousand tokens.
 */
final class ProductAttention {
    static final long SCORE_BYTES = 512L << 20;
    private static final int BLOCK = 256;

    private final CudaBackend be;

    ProductAttention(CudaBackend be) { this.be = be; }

    /** One block of queries against one block of keys: rows [q0, q0 + nq) and [k0, k0 + nk); causal offset. */
    private record Unit(int q0, int nq, int k0, int nk, boolean causal, int offset) {}

    /** Causal blocks of at least twice this many queries are split into row blocks of this many. */
    static final int CAUSAL_CHUNK = 512;

    /**
     * The blocks of work: each segment, or the whole sequence; a long causal block is split into row blocks that
     * each take only the keys they may see (about 5/8 of the products and softmax traffic for 4 blocks).
     */
    private static Unit[] units(int n, int kvLen, AttentionMask mask) {
        int[] seg = mask.segments();
        if (seg == null && mask.causal() && n >= 2 * CAUSAL_CHUNK) {
            java.util.List<Unit> u = new java.util.ArrayList<>();
            for (int q0 = 0; q0 < n; q0 += CAUSAL_CHUNK) {
                int nq = Math.min(CAUSAL_CHUNK, n - q0), off = mask.queryOffset() + q0;
                u.add(new Unit(q0, nq, 0, Math.min(kvLen, off + nq), true, off));
            }
            return u.toArray(new Unit[0]);
        }
        if (seg == null) return new Unit[]{new Unit(0, n, 0, kvLen, mask.causal(), mask.queryOffset())};
        Unit[] u = new Unit[seg.length - 1];
        for (int s = 0; s + 1 < seg.length; s++) u[s] = new Unit(seg[s], seg[s + 1] - seg[s], seg[s], seg[s + 1] - seg[s], mask.causal(), 0);
        return u;
    }

    /** Whether one head's float32 scores of every block fit in {@link #SCORE_BYTES} (else the tiled kernels serve). */
    static boolean fits(int n, int kvLen, int[] seg) {
        if (seg == null) return 4L * n * kvLen <= SCORE_BYTES;
        for (int s = 0; s + 1 < seg.length; s++) {
            long len = seg[s + 1] - seg[s];
            if (4L * len * len > SCORE_BYTES) return false;
        }
        return true;
    }

    private boolean bf16() { return be.precision() == Precision.BF16; }

    private int type() { return bf16() ? CublasLt.CUDA_R_16BF : CublasLt.CUDA_R_32F; }

    private int elem() { return bf16() ? 2 : 4; }

    /** Rows [r0, r0 + rows) of x ({@code headsIn} heads of d), each head repeated rep times, in the operand type. */
    private MemorySegment operand(Tensor x, int r0, int rows, int headsIn, int rep, int d) {
        long width = (long) headsIn * rep * d, xs = (long) headsIn * d;
        MemorySegment out = be.scratch(Math.max(4, rows * width * elem()));
        if (rows > 0)
            be.launch("expand_heads", rows, (int) Math.min(64, (width + BLOCK - 1) / BLOCK), BLOCK, 0, addr(x) + 4L * r0 * xs, xs,
                    out.address(), rows, headsIn, rep, d, bf16() ? 1 : 0);
        return out;
    }

    private int group(Unit u, int heads) {
        return (int) Math.max(1, Math.min(heads, SCORE_BYTES / Math.max(1L, 4L * u.nq * u.nk)));
    }

    /** {@code S = scale K^T Q} for heads [h0, h0 + g) into scores {@code [g][nq][nk]}, then P = masked softmax. */
    private void probabilities(Unit u, long qb, long kb, MemorySegment s, MemorySegment p, int h0, int g,
                               int width, int d, float scale) {
        long off = (long) h0 * d * elem(), nn = (long) u.nq * u.nk;
        be.blas.batched(kb + off, new CublasLt.Operand(true, d, u.nk, width, d),
                qb + off, new CublasLt.Operand(false, d, u.nq, width, d),
                s.address(), new CublasLt.Operand(false, u.nk, u.nq, u.nk, nn), g, type(), CublasLt.CUDA_R_32F, scale, be.stream);
        be.launch("masked_softmax", g * u.nq, 1, BLOCK, 0, s.address(), p.address(), u.nq, u.nk, u.causal ? 1 : 0, u.offset,
                bf16() ? 1 : 0);
    }

    /** The forward into y {@code [n, hq * d]} (every row written). */
    void forward(Tensor q, Tensor k, Tensor v, Tensor y, int kvLen, int hq, int hkv, AttentionMask mask) {
        int n = rows(q), d = (int) (q.dim(-1) / hq), width = hq * d, rep = hq / hkv;
        float scale = (float) (1.0 / Math.sqrt(d));
        // the operands once (bf16 or float32, KV heads expanded); each block reads its rows
        MemorySegment qAll = operand(q, 0, n, hq, 1, d), kAll = operand(k, 0, kvLen, hkv, rep, d), vAll = operand(v, 0, kvLen, hkv, rep, d);
        long rowBytes = (long) width * elem();
        for (Unit u : units(n, kvLen, mask)) {
            if (u.nq == 0) continue;
            long qb = qAll.address() + u.q0 * rowBytes, kb = kAll.address() + u.k0 * rowBytes, vb = vAll.address() + u.k0 * rowBytes;
            int group = group(u, hq);
            long nn = (long) u.nq * u.nk;
            MemorySegment s = be.scratch(group * nn * 4), p = be.scratch(group * nn * elem());
            for (int h0 = 0; h0 < hq; h0 += group) {
                int g = Math.min(group, hq - h0);
                probabilities(u, qb, kb, s, p, h0, g, width, d, scale);
                long off = (long) h0 * d;
                // O^T (d x nq) = V^T (d x nk) * P^T (nk x nq)
                be.blas.batched(vb + off * elem(), new CublasLt.Operand(false, d, u.nk, width, d),
                        p.address(), new CublasLt.Operand(false, u.nk, u.nq, u.nk, nn),
                        addr(y) + 4L * ((long) u.q0 * width + off), new CublasLt.Operand(false, d, u.nq, width, d), g, type(),
                        CublasLt.CUDA_R_32F, 1f, be.stream);
            }
            Reference.reachabilityFence(s);
            Reference.reachabilityFence(p);
        }
        Reference.reachabilityFence(qAll);
        Reference.reachabilityFence(kAll);
        Reference.reachabilityFence(vAll);
    }

    /** The backward: accumulates into dq {@code [n, hq d]}, dk and dv {@code [>= kvLen, hkv d]} (any may be null). */
    void backward(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask, Tensor dOut,
                  Tensor dq, Tensor dk, Tensor dv) {
        int n = rows(q), d = (int) (q.dim(-1) / hq), width = hq * d, rep = hq / hkv, kvWidth = hkv * d;
        if (hq % hkv != 0) throw new IllegalArgumentException("attention: " + hq + " query heads over " + hkv + " KV heads");
        float scale = (float) (1.0 / Math.sqrt(d));
        MemorySegment qAll = operand(q, 0, n, hq, 1, d), kAll = operand(k, 0, kvLen, hkv, rep, d), vAll = operand(v, 0, kvLen, hkv, rep, d),
                oAll = operand(dOut, 0, n, hq, 1, d);
        long rowBytes = (long) width * elem();
        for (Unit u : units(n, kvLen, mask)) {
            if (u.nq == 0 || u.nk == 0) continue;
            long qb = qAll.address() + u.q0 * rowBytes, kb = kAll.address() + u.k0 * rowBytes, vb = vAll.address() + u.k0 * rowBytes,
                    ob = oAll.address() + u.q0 * rowBytes;
            MemorySegment dkx = dk == null ? null : be.scratch(4L * u.nk * width), dvx = dv == null ? null : be.scratch(4L * u.nk * width);
            int group = group(u, hq);
            long nn = (long) u.nq * u.nk;
            MemorySegment s = be.scratch(group * nn * 4), p = be.scratch(group * nn * elem()),
                    ds = bf16() ? be.scratch(group * nn * 2) : s;
            for (int h0 = 0; h0 < hq; h0 += group) {
                int g = Math.min(group, hq - h0);
                long off = (long) h0 * d;
                probabilities(u, qb, kb, s, p, h0, g, width, d, scale);
                CublasLt.Operand headCols = new CublasLt.Operand(false, d, u.nq, width, d), keyCols = new CublasLt.Operand(false, d, u.nk, width, d);
                if (dvx != null)   // dV^T (d x nk) = dO^T (d x nq) * P (nq x nk)
                    be.blas.batched(ob + off * elem(), headCols, p.address(), new CublasLt.Operand(true, u.nk, u.nq, u.nk, nn),
                            dvx.address() + 4 * off, keyCols, g, type(), CublasLt.CUDA_R_32F, 1f, be.stream);
                // dP^T (nk x nq) = V (nk x d) * dO^T (d x nq), into the score buffer (P is computed)
                be.blas.batched(vb + off * elem(), new CublasLt.Operand(true, d, u.nk, width, d), ob + off * elem(),
                        headCols, s.address(), new CublasLt.Operand(false, u.nk, u.nq, u.nk, nn), g, type(), CublasLt.CUDA_R_32F, 1f, be.stream);
                be.launch("softmax_backward_rows", g * u.nq, 1, BLOCK, 0, p.address(), s.address(), ds.address(), u.nk, bf16() ? 1 : 0);
                CublasLt.Operand dsCols = new CublasLt.Operand(false, u.nk, u.nq, u.nk, nn);
                if (dq != null)    // dQ^T (d x nq) += scale K^T (d x nk) * dS^T (nk x nq)
                    be.blas.batched(kb + off * elem(), keyCols, ds.address(), dsCols,
                            addr(dq) + 4L * ((long) u.q0 * width + off), headCols, g, type(), CublasLt.CUDA_R_32F, scale, 1f, be.stream);
                if (dkx != null)   // dK^T (d x nk) = scale Q^T (d x nq) * dS (nq x nk)
                    be.blas.batched(qb + off * elem(), headCols, ds.address(), new CublasLt.Operand(true, u.nk, u.nq, u.nk, nn),
                            dkx.address() + 4 * off, keyCols, g, type(), CublasLt.CUDA_R_32F, scale, be.stream);
            }
            int cb = (int) Math.min(64, (kvWidth + BLOCK - 1) / BLOCK);
            if (dkx != null) be.launch("reduce_heads_add", u.nk, cb, BLOCK, 0, dkx.address(), addr(dk) + 4L * u.k0 * kvWidth,
                    (long) kvWidth, u.nk, hkv, rep, d);
            if (dvx != null) be.launch("reduce_heads_add", u.nk, cb, BLOCK, 0, dvx.address(), addr(dv) + 4L * u.k0 * kvWidth,
                    (long) kvWidth, u.nk, hkv, rep, d);
            for (MemorySegment m : new MemorySegment[]{dkx, dvx, s, p, ds}) Reference.reachabilityFence(m);
        }
        for (MemorySegment m : new MemorySegment[]{qAll, kAll, vAll, oAll}) Reference.reachabilityFence(m);
    }
}
