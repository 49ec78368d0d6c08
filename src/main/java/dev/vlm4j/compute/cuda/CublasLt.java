package dev.vlm4j.compute.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * java.lang.foreign bindings for cuBLASLt (libcublasLt.so.13, or .12) and the one product vlm4j needs:
 * {@code Y[n, out] = X[n, in] W[out, in]^T} with row-major X, W, Y. In cuBLAS's column-major terms that is
 * {@code Y^T (out x n) = op_T(W^T as in x out) * X^T (in x n)}. A plan (descriptors and the heuristic's algorithm)
 * is built once per shape and type and reused, so decoding does no per-token setup.
 */
final class CublasLt implements AutoCloseable {
    static final int CUDA_R_32F = 0, CUDA_R_16BF = 14;
    static final int CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77;

    /**
     * Float32 x float32 products on the tensor cores with TF32 inputs (set for the bf16 mode, where they are the LoRA
     * factors' products: TF32 keeps more mantissa than the bf16 activations around them); off: exact float32.
     */
    private boolean tf32;

    void tf32(boolean on) { tf32 = on; }

    private int computeType(int abType) { return tf32 && abType == CUDA_R_32F ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F; }
    static final int DESC_TRANSA = 3, DESC_TRANSB = 4, DESC_EPILOGUE = 7, DESC_BIAS_POINTER = 8;
    static final int EPILOGUE_BIAS = 4;
    static final int OP_N = 0, OP_T = 1;
    static final int PREF_MAX_WORKSPACE_BYTES = 1;
    /** sizeof(cublasLtMatmulHeuristicResult_t): algo (64 bytes), workspaceSize, state, wavesCount, reserved[4]. */
    static final long HEURISTIC_BYTES = 96;

    private record Key(int m, int n, int k, int abType, boolean bias) {}

    /** Marks a shape for which cuBLASLt offers no bias epilogue (the caller adds the bias itself). */
    private static final Plan NO_PLAN = new Plan(null, null, null, null, null);

    private record Plan(MemorySegment desc, MemorySegment a, MemorySegment b, MemorySegment c, MemorySegment result) {}

    private final MethodHandle create, destroy, descCreate, descSet, descDestroy, layoutCreate, layoutDestroy, layoutSet,
            prefCreate, prefSet, prefDestroy, heuristic, matmul, statusString;
    private final Arena arena = Arena.ofShared();
    private final MemorySegment handle, pref, alpha, beta, biasPointer, alphaBatched, betaBatched;
    private final long workspace, workspaceBytes;
    private final Map<Key, Plan> plans = new HashMap<>();

    CublasLt(long workspace, long workspaceBytes) {
        SymbolLookup lib = NativeLibs.open("VLM4J_CUBLASLT_LIB", List.of("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"), Arena.global());
        create = NativeLibs.fn(lib, "cublasLtCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        destroy = NativeLibs.fn(lib, "cublasLtDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        descCreate = NativeLibs.fn(lib, "cublasLtMatmulDescCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        descSet = NativeLibs.fn(lib, "cublasLtMatmulDescSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
        descDestroy = NativeLibs.fn(lib, "cublasLtMatmulDescDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        layoutCreate = NativeLibs.fn(lib, "cublasLtMatrixLayoutCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        layoutDestroy = NativeLibs.fn(lib, "cublasLtMatrixLayoutDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        layoutSet = NativeLibs.fn(lib, "cublasLtMatrixLayoutSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
        prefCreate = NativeLibs.fn(lib, "cublasLtMatmulPreferenceCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        prefSet = NativeLibs.fn(lib, "cublasLtMatmulPreferenceSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS, JAVA_LONG));
        prefDestroy = NativeLibs.fn(lib, "cublasLtMatmulPreferenceDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        heuristic = NativeLibs.fn(lib, "cublasLtMatmulAlgoGetHeuristic", FunctionDescriptor.of(JAVA_INT,
                ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
        matmul = NativeLibs.fn(lib, "cublasLtMatmul", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS,
                JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS, ADDRESS, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS, ADDRESS,
                JAVA_LONG, JAVA_LONG, ADDRESS));
        statusString = NativeLibs.fn(lib, "cublasLtGetStatusString", FunctionDescriptor.of(ADDRESS, JAVA_INT));
        this.workspace = workspace;
        this.workspaceBytes = workspaceBytes;
        try {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) create.invokeExact(p), "cublasLtCreate");
            handle = p.get(ADDRESS, 0);
            check((int) prefCreate.invokeExact(p), "cublasLtMatmulPreferenceCreate");
            pref = p.get(ADDRESS, 0);
            MemorySegment ws = arena.allocateFrom(JAVA_LONG, workspaceBytes);
            check((int) prefSet.invokeExact(pref, PREF_MAX_WORKSPACE_BYTES, ws, 8L), "cublasLtMatmulPreferenceSetAttribute");
        } catch (Throwable t) { throw CudaDriver.rethrow(t); }
        alpha = arena.allocateFrom(JAVA_FLOAT, 1f);
        biasPointer = arena.allocate(JAVA_LONG);
        beta = arena.allocateFrom(JAVA_FLOAT, 0f);
        alphaBatched = arena.allocate(JAVA_FLOAT);
        betaBatched = arena.allocate(JAVA_FLOAT);
    }

    private CudaProfiler profiler;

    /** Times every product from now on (see {@link CudaProfiler}). */
    void profiler(CudaProfiler p) { profiler = p; }

    static final int LAYOUT_BATCH_COUNT = 5, LAYOUT_STRIDED_BATCH_OFFSET = 6;

    /** One strided-batched product in cuBLAS's column-major terms: a transposition, shape, leading dimension, stride. */
    record Operand(boolean trans, long rows, long cols, long ld, long stride) {}

    private record BatchedKey(Operand a, Operand b, Operand c, int batch, int abType, int cType) {}

    private final Map<BatchedKey, Plan> batchedPlans = new HashMap<>();

    private MemorySegment batchedLayout(int type, Operand o, int batch) throws Throwable {
        MemorySegment l = layout(type, o.rows(), o.cols(), o.ld());
        MemorySegment count = arena.allocateFrom(JAVA_INT, batch), stride = arena.allocateFrom(JAVA_LONG, o.stride());
        check((int) layoutSet.invokeExact(l, LAYOUT_BATCH_COUNT, count, 4L), "set BATCH_COUNT");
        check((int) layoutSet.invokeExact(l, LAYOUT_STRIDED_BATCH_OFFSET, stride, 8L), "set STRIDED_BATCH_OFFSET");
        return l;
    }

    /**
     * {@code C_i = alpha * op(A_i) op(B_i)} for i < batch, column-major (the operands' rows/cols are as stored; op
     * transposes when {@code trans}), float32 accumulation; A and B of {@code abType}, C of {@code cType}.
     */
    void batched(long a, Operand oa, long b, Operand ob, long c, Operand oc, int batch, int abType, int cType, float alphaValue,
                 MemorySegment stream) {
        batched(a, oa, b, ob, c, oc, batch, abType, cType, alphaValue, 0f, stream);
    }

    /**
     * {@code C_i = alpha * op(A_i) op(B_i) + beta * C_i}: as {@link #batched(long, Operand, long, Operand, long, Operand,
     * int, int, int, float, MemorySegment)} but adding to C when {@code beta} is 1 (gradients accumulate this way).
     * The values are read when the product is queued (host pointer mode), so the shared slots can be reused at once.
     */
    void batched(long a, Operand oa, long b, Operand ob, long c, Operand oc, int batch, int abType, int cType, float alphaValue,
                 float betaValue, MemorySegment stream) {
        BatchedKey key = new BatchedKey(oa, ob, oc, batch, abType, cType);
        try {
            Plan p = batchedPlans.get(key);
            if (p == null) {
                MemorySegment ptr = arena.allocate(ADDRESS);
                check((int) descCreate.invokeExact(ptr, computeType(abType), CUDA_R_32F), "cublasLtMatmulDescCreate");
                MemorySegment desc = ptr.get(ADDRESS, 0);
                check((int) descSet.invokeExact(desc, DESC_TRANSA, arena.allocateFrom(JAVA_INT, oa.trans() ? OP_T : OP_N), 4L), "set TRANSA");
                check((int) descSet.invokeExact(desc, DESC_TRANSB, arena.allocateFrom(JAVA_INT, ob.trans() ? OP_T : OP_N), 4L), "set TRANSB");
                MemorySegment la = batchedLayout(abType, oa, batch), lb = batchedLayout(abType, ob, batch), lc = batchedLayout(cType, oc, batch);
                MemorySegment res = arena.allocate(HEURISTIC_BYTES, 16), count = arena.allocate(JAVA_INT);
                check((int) heuristic.invokeExact(handle, desc, la, lb, lc, lc, pref, 1, res, count), "cublasLtMatmulAlgoGetHeuristic");
                if (count.get(JAVA_INT, 0) < 1) throw new CudaException("cuBLASLt has no algorithm for the batched product " + key, -1);
                p = new Plan(desc, la, lb, lc, res);
                batchedPlans.put(key, p);
            }
            alphaBatched.set(JAVA_FLOAT, 0, alphaValue);
            betaBatched.set(JAVA_FLOAT, 0, betaValue);
            MemorySegment t = profiler == null ? null : profiler.start();
            check((int) matmul.invokeExact(handle, p.desc, alphaBatched, a, p.a, b, p.b, betaBatched, c, p.c, c, p.c,
                    p.result, workspace, workspaceBytes, stream), "cublasLtMatmul (batched)");
            if (t != null) profiler.end(t, String.format("gemm %s%d x%d %dx%d.%dx%d %s", abType == CUDA_R_16BF ? "bf16 " : "f32 ",
                    batch, oa.rows(), oa.cols(), ob.rows(), ob.cols(), oa.trans() ? 1 : 0, ob.trans() ? "T" : "N"));
        } catch (Throwable t) { throw CudaDriver.rethrow(t); }
    }

    private void check(int rc, String what) {
        if (rc == 0) return;
        String s;
        try {
            MemorySegment m = (MemorySegment) statusString.invokeExact(rc);
            s = m.address() == 0 ? "" : m.reinterpret(256).getString(0);
        } catch (Throwable t) { s = ""; }
        throw new CudaException(what + ": cuBLAS status " + rc + " " + s, rc);
    }

    private MemorySegment layout(int type, long rows, long cols, long ld) throws Throwable {
        MemorySegment p = arena.allocate(ADDRESS);
        check((int) layoutCreate.invokeExact(p, type, rows, cols, ld), "cublasLtMatrixLayoutCreate");
        return p.get(ADDRESS, 0);
    }

    private Plan plan(int n, int in, int out, int abType, boolean bias) {
        Key key = new Key(out, n, in, abType, bias);
        Plan pl = plans.get(key);
        if (pl != null) return pl;
        try {
            pl = newPlan(n, in, out, abType, bias);
        } catch (CudaException e) {
            if (!bias) throw e;
            pl = NO_PLAN;
        }
        plans.put(key, pl);
        return pl;
    }

    private Plan newPlan(int n, int in, int out, int abType, boolean bias) {
        try {
            MemorySegment p = arena.allocate(ADDRESS);
            check((int) descCreate.invokeExact(p, computeType(abType), CUDA_R_32F), "cublasLtMatmulDescCreate");
            MemorySegment desc = p.get(ADDRESS, 0);
            MemorySegment t = arena.allocateFrom(JAVA_INT, OP_T), nn = arena.allocateFrom(JAVA_INT, OP_N);
            check((int) descSet.invokeExact(desc, DESC_TRANSA, t, 4L), "set TRANSA");
            check((int) descSet.invokeExact(desc, DESC_TRANSB, nn, 4L), "set TRANSB");
            if (bias) {
                MemorySegment epi = arena.allocateFrom(JAVA_INT, EPILOGUE_BIAS);
                check((int) descSet.invokeExact(desc, DESC_EPILOGUE, epi, 4L), "set EPILOGUE");
            }
            MemorySegment a = layout(abType, in, out, in);      // W as column-major in x out
            MemorySegment b = layout(abType, in, n, in);        // X as column-major in x n
            MemorySegment c = layout(CUDA_R_32F, out, n, out);  // Y as column-major out x n
            MemorySegment res = arena.allocate(HEURISTIC_BYTES, 16);
            MemorySegment count = arena.allocate(JAVA_INT);
            check((int) heuristic.invokeExact(handle, desc, a, b, c, c, pref, 1, res, count), "cublasLtMatmulAlgoGetHeuristic");
            if (count.get(JAVA_INT, 0) < 1)
                throw new CudaException("cuBLASLt has no algorithm for " + n + "x" + in + " by " + out + "x" + in, -1);
            return new Plan(desc, a, b, c, res);
        } catch (Throwable t) { throw CudaDriver.rethrow(t); }
    }

    /**
     * {@code y[n, out] = x[n, in] w[out, in]^T (+ bias[out])}; x and w both of {@code abType} (f32 or bf16), y and
     * bias float32 ({@code bias} 0 for none). Returns false when the bias could not be fused (y then lacks it).
     */
    boolean linear(long x, long w, long bias, long y, int n, int in, int out, int abType, MemorySegment stream) {
        Plan p = bias == 0 ? NO_PLAN : plan(n, in, out, abType, true);
        boolean fused = p != NO_PLAN;
        if (!fused) p = plan(n, in, out, abType, false);
        try {
            if (fused) {
                MemorySegment bp = biasPointer;
                bp.set(JAVA_LONG, 0, bias);
                check((int) descSet.invokeExact(p.desc, DESC_BIAS_POINTER, bp, 8L), "set BIAS_POINTER");
            }
            MemorySegment t = profiler == null ? null : profiler.start();
            check((int) matmul.invokeExact(handle, p.desc, alpha, w, p.a, x, p.b, beta, y, p.c, y, p.c,
                    p.result, workspace, workspaceBytes, stream), "cublasLtMatmul");
            if (t != null) profiler.end(t, String.format("linear %s%d x %d -> %d", abType == CUDA_R_16BF ? "bf16 " : "f32 ", n, in, out));
        } catch (Throwable t) { throw CudaDriver.rethrow(t); }
        return fused;
    }

    /**
     * {@code y[n, out] = c[n, out] + x[n, in] w[out, in]^T} (c and y float32, may be the same), the sum done by the
     * product's epilogue ({@code beta = 1} with C = c, D = y): a residual or LoRA update added without another pass.
     */
    void linearAdd(long x, long w, long c, long y, int n, int in, int out, int abType, MemorySegment stream) {
        Plan p = plan(n, in, out, abType, false);
        try {
            MemorySegment t = profiler == null ? null : profiler.start();
            check((int) matmul.invokeExact(handle, p.desc, alpha, w, p.a, x, p.b, alpha, c, p.c, y, p.c,
                    p.result, workspace, workspaceBytes, stream), "cublasLtMatmul (add)");
            if (t != null) profiler.end(t, String.format("linear+add %s%d x %d -> %d", abType == CUDA_R_16BF ? "bf16 " : "f32 ", n, in, out));
        } catch (Throwable t) { throw CudaDriver.rethrow(t); }
    }

    @Override
    public void close() {
        try {
            java.util.List<Plan> all = new java.util.ArrayList<>(plans.values());
            all.addAll(batchedPlans.values());
            for (Plan p : all) {
                if (p == NO_PLAN) continue;
                int r1 = (int) layoutDestroy.invokeExact(p.a);
                int r2 = (int) layoutDestroy.invokeExact(p.b);
                int r3 = (int) layoutDestroy.invokeExact(p.c);
                int r4 = (int) descDestroy.invokeExact(p.desc);
            }
            plans.clear();
            batchedPlans.clear();
            int r5 = (int) prefDestroy.invokeExact(pref);
            int r6 = (int) destroy.invokeExact(handle);
        } catch (Throwable t) {
            // best effort at shutdown
        }
        arena.close();
    }
}
