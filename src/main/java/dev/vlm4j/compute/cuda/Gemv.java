package dev.vlm4j.compute.cuda;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;

import static dev.vlm4j.compute.cuda.CudaBackend.addr;

/**
 * The batch-1 products of decoding: matrix-vector kernels that stream the weights faster than a skinny GEMM.
 * {@code gemv_bf16_fused} runs up to three products of one input in a launch (q/k/v), SwiGLU's gate and up, or a
 * product with the residual added; the warp-per-row kernels ({@code gemv_bf16}, {@code gemv_bf16_sx} with x staged in
 * shared memory, {@code gemv_f32}) take the rest.
 */
final class Gemv {
    /** Rows per block of the warp-per-row kernels. */
    static final int ROWS = 8;

    private final CudaBackend be;
    /** Batch-1 products through gemv_bf16_fused (VLM4J_CUDA_GEMV=warp: off). */
    boolean fusedGemv = !"warp".equals(System.getenv("VLM4J_CUDA_GEMV"));

    Gemv(CudaBackend be) { this.be = be; }

    /** y = x W^T + b for one row x (in % 8 == 0), W bf16 or float32 on the device. */
    void product(Tensor x, Tensor w, Tensor bias, Tensor y, int in, int out) {
        if (fusedGemv && w.dtype() == DType.BF16) {
            fused(x, in, new Tensor[]{w}, new Tensor[]{bias}, new Tensor[]{y}, null, false);
            return;
        }
        long b = bias == null ? 0 : addr(be.upload(bias));
        String k = switch (w.dtype()) {
            case BF16 -> "gemv_bf16";
            case F32 -> "gemv_f32";
            default -> throw new IllegalArgumentException("linear: weights of dtype " + w.dtype());
        };
        boolean sx = w.dtype() == DType.BF16 && in * 4 <= 48 * 1024;   // x staged (rounded) in shared memory
        if (sx) k = "gemv_bf16_sx";
        int rowsPerBlock = sx && out >= 4096 ? 2 * ROWS : ROWS;   // more rows share one staged x
        be.launch(k, (out + rowsPerBlock - 1) / rowsPerBlock, 1, 32 * rowsPerBlock, sx ? in * 4 : 0, addr(x), addr(w), b,
                addr(y), in, out);
    }

    /** Whether a batch-1 product of x with these weights can take the fused gemv kernel. */
    boolean fusable(Tensor x, boolean gemvOn, Tensor... ws) {
        if (!fusedGemv || !gemvOn || x.numel() / x.dim(-1) != 1 || x.dim(-1) % 8 != 0) return false;
        for (Tensor w : ws)
            if (!be.onDevice(w) || w.dtype() != DType.BF16 || w.rank() != 2 || w.dim(1) != x.dim(-1)) return false;
        return true;
    }

    /** One launch of gemv_bf16_fused: up to three segments (weights, biases, outputs), a residual, or SwiGLU. */
    void fused(Tensor x, int in, Tensor[] ws, Tensor[] bs, Tensor[] ys, Tensor res, boolean swiglu) {
        long[] w = new long[3], b = new long[3], y = new long[3];
        int[] r = new int[3];
        for (int i = 0; i < ws.length; i++) {
            w[i] = addr(ws[i]);
            b[i] = bs[i] == null ? 0 : addr(be.upload(bs[i]));
            if (!swiglu || i == 0) y[i] = addr(ys[i]);
            if (!swiglu) r[i] = (int) ws[i].dim(0);
        }
        if (swiglu) r[0] = (int) ws[0].dim(0);
        int outputs = r[0] + r[1] + r[2], weightRows = swiglu ? 2 * outputs : outputs;
        // warps per row: enough warps for ~130 SMs also on 4096-row matrices. Large matrices take blocks of 16 warps
        // with x staged once per block in shared memory (as gemv_bf16_sx), the others 8 warps reading x directly
        int split = weightRows >= 16384 ? 1 : weightRows >= 6144 ? 2 : 4;
        boolean stage = split == 1 && in * 4 <= 48 * 1024;
        int warps = stage ? 16 : 8, rowsPerBlock = warps / split;
        be.launch("gemv_bf16_fused", (outputs + rowsPerBlock - 1) / rowsPerBlock, 1, 32 * warps, stage ? in * 4 : 0, addr(x), in,
                w[0], w[1], w[2], b[0], b[1], b[2], y[0], y[1], y[2], r[0], r[1], r[2], res == null ? 0L : addr(res),
                swiglu ? 1 : 0, split, stage ? 1 : 0);
    }
}
