package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The CUDA backend: tensors live in device memory (a {@link Tensor}'s segment wraps the device address and is never
 * dereferenced on the host), activations are float32, weight matrices bf16 or float32 ({@link Precision}), products
 * run through cuBLASLt and everything else through the kernels of {@code kernels.cu}. One stream; host copies
 * ({@link #toHost}) wait for it. Inputs that still live on the host (pixel values, memory-mapped weights) are copied
 * over on use. Not thread-safe: use one backend from one thread at a time.
 */
public final class CudaBackend implements Backend {
    private static final ValueLayout.OfFloat F32 = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final int BLOCK = 256;
    private static final long WORKSPACE = 32L << 20;
    /** Single-row products use the gemv kernels (VLM4J_CUDA_GEMV=0 sends them to cuBLASLt too). */
    private static final boolean GEMV = !"0".equals(System.getenv("VLM4J_CUDA_GEMV"));
    private static final int GEMV_ROWS = Gemv.ROWS;
    /** The batch-1 products (matrix-vector kernels). */
    private final Gemv gemv = new Gemv(this);

    final CudaDriver drv;
    private final int ordinal, dev;
    private final Device device;
    private final Precision precision;
    final MemorySegment ctx, stream;
    final DevicePool pool;
    final CublasLt blas;
    private final Map<String, MemorySegment> fns = new HashMap<>();
    /** Kernel launches and host-to-device copies on the stream, recorded or checked inside a step graph. */
    private final StreamOps ops;
    private final String name;
    private final ThreadLocal<Boolean> current = ThreadLocal.withInitial(() -> false);
    private boolean closed;
    private final int multiprocessors;
    private final Bf16Copies bf16Copies = new Bf16Copies();
    /** Batched decode kernels (appendRows, attentionBatch, argmaxRows) and the tiled attention; off = the defaults. */
    boolean batchedKernels = !"0".equals(System.getenv("VLM4J_CUDA_BATCHED")),
            flashAttention = !"0".equals(System.getenv("VLM4J_CUDA_FLASH"));
    /** Attention over long sequences on the tensor cores (flash kernels or products, bf16 mode); VLM4J_CUDA_GEMM_ATTENTION=0: off. */
    boolean gemmAttention = !"0".equals(System.getenv("VLM4J_CUDA_GEMM_ATTENTION"));
    /**
     * bf16 mode: attention over long sequences (where the products would run) and every attention backward through
     * the tensor-core flash kernels ({@link FlashAttention}) for the head sizes they support; VLM4J_CUDA_FLASH_TC=0: off.
     */
    private boolean tensorCoreFlash = !"0".equals(System.getenv("VLM4J_CUDA_FLASH_TC"));
    /** Whether the second flash kernels ({@code flash2_kernels.cu}) loaded and fit this device's shared memory. */
    boolean flashV2;
    /** Decode steps run as CUDA graphs (VLM4J_CUDA_GRAPHS=0 or {@link #useGraphs} switch it off). */
    private boolean useGraphs = !"0".equals(System.getenv("VLM4J_CUDA_GRAPHS"));
    private final StepGraphs graphs;
    private final ProductAttention products = new ProductAttention(this);
    private final FlashAttention flash = new FlashAttention(this);
    private final CudaAttention attention = new CudaAttention(this, products, flash);
    private CudaProfiler profiler;

    /**
     * With VLM4J_CUDA_PROFILE set: the kernels and products taking the most GPU time since the last call, one line
     * each (the report waits for the GPU); otherwise null.
     */
    public String profileReport(int top) {
        if (profiler == null) return null;
        long[] c = flash.counts();
        return profiler.report(top) + (c[0] + c[1] == 0 ? "" : String.format("%n  flash attention backwards: %d reused the kept forward, %d ran it again%n", c[0], c[1]));
    }
    private final CudaGradOps gradOps = new CudaGradOps(this, products, flash);

    private CudaBackend(int ordinal, Precision precision) {
        this.drv = CudaDriver.get();
        int count = drv.deviceCount();
        if (ordinal < 0 || ordinal >= count)
            throw new IllegalArgumentException("cuda:" + ordinal + " does not exist (" + count + " CUDA device(s))");
        this.ordinal = ordinal;
        this.dev = drv.device(ordinal);
        this.device = new Device("cuda", ordinal);
        this.precision = precision;
        this.name = drv.deviceName(dev);
        this.ctx = drv.primaryContext(dev);
        drv.setCurrent(ctx);
        current.set(true);
        this.stream = drv.createStream();
        long[] mem = drv.memInfo();
        // garbage activations go back to the pool when the GC runs: ask for one after free/16 (at most 4 GiB) of new
        // blocks (a batch-64 decode step leaves about 0.6 GiB of activations behind)
        this.pool = new DevicePool(drv, Math.min(4L << 30, Math.max(256L << 20, mem[0] / 16)));
        this.multiprocessors = drv.attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev);
        int major = drv.attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev);
        int minor = drv.attribute(CudaDriver.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev);
        loadModule(Kernels.ptx(major * 10 + minor), Kernels.NAMES);
        loadModule(Kernels.ptx(major * 10 + minor, Kernels.TRAIN_SOURCE, Kernels.TRAIN_PTX), Kernels.TRAIN_NAMES);
        if (major >= 8) {   // mma.sync with bf16 operands
            boolean[] on = FlashAttention.load(drv, (src, ptx, names) -> loadModule(Kernels.ptx(major * 10 + minor, src, ptx), names), fns::get);
            tensorCoreFlash &= on[0];
            flashV2 = on[1];
        } else {
            tensorCoreFlash = false;
        }
        this.blas = new CublasLt(pool.allocPermanent(WORKSPACE).address(), WORKSPACE);
        blas.tf32(precision == Precision.BF16 && !"0".equals(System.getenv("VLM4J_CUDA_TF32")));
        this.graphs = new StepGraphs(drv, stream, this::wrote);
        this.ops = new StreamOps(drv, stream, graphs, fns);
        if (CudaProfiler.ON) {
            profiler = new CudaProfiler(drv, stream);
            ops.profiler(profiler);
            blas.profiler(profiler);
        }
        try {
            drv.setFunctionAttribute(fns.get("attention_flash"), CudaDriver.CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    CudaAttention.flashShared(CudaAttention.FLASH_MAX_D));
        } catch (CudaException e) {
            flashAttention = false;   // a device with less shared memory per block keeps the one-query-per-block kernel
        }
    }

    /** A loaded kernel by entry name (probes read its attributes). */
    MemorySegment function(String name) { return fns.get(name); }

    private void loadModule(byte[] ptx, List<String> names) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment img = a.allocate(ptx.length + 1L);
            MemorySegment.copy(ptx, 0, img, ValueLayout.JAVA_BYTE, 0, ptx.length);
            MemorySegment module = drv.loadModule(img);
            for (String f : names) fns.put(f, drv.function(module, f));
        }
    }

    /** Switches the batched decode kernels (on by default; VLM4J_CUDA_BATCHED=0) for benchmarks and tests. */
    public void useBatchedKernels(boolean on) { batchedKernels = on; }

    /** Switches the tiled (flash) attention for many queries (on by default; VLM4J_CUDA_FLASH=0). */
    public void useFlashAttention(boolean on) { flashAttention = on; }

    /** Switches the tensor-core flash attention of bf16 mode (on by default; VLM4J_CUDA_FLASH_TC=0), for benchmarks and tests. */
    public void useTensorCoreFlash(boolean on) { tensorCoreFlash = on; }

    /** Whether bf16 attention of head size d (forward over long sequences, every backward) takes the flash kernels. */
    boolean tensorCoreFlash(int d) { return tensorCoreFlash && precision == Precision.BF16 && FlashAttention.supports(d); }

    /** Switches full attention over long sequences as batched products (on by default), for benchmarks and tests. */
    public void useGemmAttention(boolean on) { gemmAttention = on; }

    /** Switches the fused batch-1 gemv kernel (on by default; VLM4J_CUDA_GEMV=warp), for benchmarks and tests. */
    public void useFusedGemv(boolean on) { gemv.fusedGemv = on; }

    /** Switches CUDA graphs for repeated steps (on by default; VLM4J_CUDA_GRAPHS=0), for benchmarks and tests. */
    public void useGraphs(boolean on) { useGraphs = on; }

    /** {captured, replayed} step graphs so far. */
    public long[] graphCounts() { return graphs.counts(); }

    /**
     * Runs a repeated step (see {@link Backend#graph}) as a CUDA graph: captured the first time under {@code key},
     * replayed after a dry run of the step that checks every operation against the capture ({@link StepGraphs}).
     * The step's result lives in the step arena and is valid until the next step.
     */
    @Override
    public <T> T graph(Object key, java.util.function.Supplier<T> step) {
        if (!useGraphs) return step.get();
        bind();
        return graphs.run(key, step);
    }

    /** Device scratch memory: from the step arena inside a step, else from the pool (freed by the GC). */
    MemorySegment scratch(long bytes) {
        if (graphs.active()) return MemorySegment.ofAddress(graphs.alloc(bytes)).reinterpret(bytes);
        return pool.alloc(bytes);
    }

    void noSyncInStep(String what) {
        if (graphs.active())
            throw new IllegalStateException(what + " waits for the GPU, which a captured step must not do");
    }

    /** A backend on CUDA device {@code ordinal} (as in "cuda:N"). */
    public static CudaBackend create(int ordinal, Precision precision) { return new CudaBackend(ordinal, precision); }

    /** Why CUDA cannot be used here, or null when it can (a driver, a device, cuBLASLt and the kernels). */
    public static String unavailableReason() {
        try {
            CudaDriver d = CudaDriver.get();
            if (d.deviceCount() == 0) return "the CUDA driver reports no device";
            NativeLibs.open("VLM4J_CUBLASLT_LIB", List.of("libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"), Arena.global());
            String k = Kernels.unavailableReason();
            if (k != null) return k;
            return null;
        } catch (RuntimeException | LinkageError e) {
            return e.getMessage();
        }
    }

    /** True when a CUDA device, its driver and cuBLASLt are usable; see {@link #unavailableReason()}. */
    public static boolean isAvailable() { return unavailableReason() == null; }

    public Precision precision() { return precision; }
    public String deviceName() { return name; }

    /** The device's streaming multiprocessors (grids of resident blocks are sized by it). */
    int multiprocessors() { return multiprocessors; }

    /**
     * Waits for queued work, collects unreachable activations and frees every cached block (the pool otherwise keeps
     * them for reuse, up to what the largest request needed). The step-graph arena stays (it is reused every step).
     */
    @Override
    public void releaseCachedMemory() {
        bind();
        noSyncInStep("releaseCachedMemory");
        drv.streamSynchronize(stream);
        pool.trim();
    }

    /** Bytes this backend holds on the device (weights, activations, cached blocks) and its peak. */
    public long[] deviceBytes() { return new long[]{pool.driverBytes(), pool.peakDriverBytes()}; }

    /**
     * Bytes of device memory in use (weights and live tensors, without the blocks cached for reuse) and the most
     * since {@link #resetPeakBytesInUse} (torch's memory_allocated / max_memory_allocated).
     */
    public long[] bytesInUse() { return pool.inUse(); }

    public void resetPeakBytesInUse() { pool.resetPeakInUse(); }

    @Override public long peakDeviceBytes() { return pool.inUse()[1]; }

    @Override public dev.vlm4j.compute.GradOps gradOps() { return gradOps; }

    /** Frees what {@code body} allocated when it returns (see {@link Backend#scoped}), without waiting for the GC. */
    @Override
    public Tensor scoped(java.util.function.Supplier<Tensor> body) { return scoped(body, out -> java.util.List.of()); }

    /** As {@link #scoped(java.util.function.Supplier)}, keeping also the blocks of the tensors {@code keep} names. */
    @Override
    public Tensor scoped(java.util.function.Supplier<Tensor> body, java.util.function.Function<Tensor, java.util.List<Tensor>> keep) {
        bind();
        if (graphs.active()) return body.get();
        pool.openScope();
        Tensor out = null;
        java.util.List<Tensor> kept = java.util.List.of();
        try {
            out = body.get();
            kept = keep.apply(out);
            return out;
        } finally {
            wrote();   // the cached bf16 copy may be one of the blocks freed now
            long[] addrs = new long[1 + kept.size()];
            int c = 0;
            if (out != null && onDevice(out)) addrs[c++] = addr(out);
            for (Tensor t : kept) if (onDevice(t)) addrs[c++] = addr(t);
            pool.closeScope(java.util.Arrays.copyOf(addrs, c));
        }
    }

    @Override public Tensor dropout(Tensor x, float p, long seed) { return gradOps.dropout(x, p, seed); }

    @Override
    public Tensor loraDown(Tensor x, Tensor a, float scale, float p, long seed) {
        return gradOps.fusesLoraDown((int) a.dim(0)) ? gradOps.loraDown(x, a, scale, p, seed) : Backend.super.loraDown(x, a, scale, p, seed);
    }

    /** {@code x * s} on the device (the interface default would round-trip through the host and wait for the GPU). */
    @Override public Tensor scale(Tensor x, float s) { return gradOps.scaled(x, s); }

    @Override public Tensor mul(Tensor a, Tensor b) { return gradOps.product(a, b); }

    /** Forgets the cached bf16 copy of {@code t} when t is about to change in place (gradients accumulating). */
    void modifies(Tensor t) {
        bf16Copies.forget(t);
    }

    @Override public Device device() { return device; }

    void bind() {
        if (closed) throw new IllegalStateException("the CUDA backend is closed");
        if (!current.get()) {
            drv.setCurrent(ctx);
            current.set(true);
        }
    }

    /** Waits for all queued work. */
    public void synchronize() {
        bind();
        noSyncInStep("synchronize");
        drv.streamSynchronize(stream);
    }

    boolean onDevice(Tensor t) { return device.equals(t.device()); }

    static long addr(Tensor t) { return t.data().address(); }

    static int rows(Tensor t) { return (int) (t.numel() / t.dim(-1)); }

    Tensor newF32(long... shape) {
        long bytes = Tensor.numel(shape) * 4;
        return new Tensor(DType.F32, shape, scratch(Math.max(4, bytes)), device);
    }

    /** Copies host bytes (any segment, heap or native) to device memory (queued; see {@link StreamOps#copyIn}). */
    void copyIn(long dst, MemorySegment src, long bytes) { ops.copyIn(dst, src, bytes); }

    /** Device-to-device copy on the stream. */
    void copyDeviceAsync(long dst, long src, long bytes) { drv.copyDtoDAsync(dst, src, bytes, stream); }

    /** A device float32 copy of a host tensor (activation inputs such as pixel values), or the tensor itself. */
    Tensor dev(Tensor t) {
        if (onDevice(t)) {
            if (t.dtype() != DType.F32) throw new IllegalArgumentException("expected a float32 activation, got " + t);
            return t;
        }
        if (!t.device().isCpu()) throw new IllegalArgumentException(t + " is on another device than " + device);
        return fromHost(t.dtype() == DType.F32 ? null : t.toFloatArray(), t);
    }

    private Tensor fromHost(float[] converted, Tensor t) {
        bind();
        Tensor out = newF32(t.shape());
        if (converted != null) copyIn(addr(out), MemorySegment.ofArray(converted), converted.length * 4L);
        else copyIn(addr(out), t.data(), t.numel() * 4);
        return out;
    }

    MemorySegment ints(int[] v) {
        MemorySegment s = scratch(Math.max(4, v.length * 4L));
        copyIn(s.address(), MemorySegment.ofArray(v), v.length * 4L);
        return s;
    }

    @Override
    public Tensor upload(Tensor w) {
        bind();
        if (onDevice(w)) return w;
        boolean matrix = w.rank() >= 2;
        DType target = matrix && precision == Precision.BF16 ? DType.BF16 : DType.F32;
        long bytes = w.numel() * target.bytes;
        Tensor out = new Tensor(target, w.shape(), pool.allocPermanent(Math.max(4, bytes)), device);
        if (w.dtype() == target) {
            copyIn(addr(out), w.data(), bytes);
        } else if (target == DType.F32) {
            float[] f = w.toFloatArray();
            copyIn(addr(out), MemorySegment.ofArray(f), bytes);
        } else {
            float[] f = w.toFloatArray();
            short[] b = new short[f.length];
            for (int i = 0; i < f.length; i++) b[i] = toBf16(f[i]);
            copyIn(addr(out), MemorySegment.ofArray(b), bytes);
        }
        return out;
    }

    static short toBf16(float f) {
        int u = Float.floatToRawIntBits(f);
        if ((u & 0x7fffffff) > 0x7f800000) return (short) ((u >>> 16) | 0x40);
        u += 0x7fff + ((u >>> 16) & 1);
        return (short) (u >>> 16);
    }

    @Override
    public Tensor fromHost(float[] values, long... shape) {
        if (Tensor.numel(shape) != values.length)
            throw new IllegalArgumentException("shape does not hold " + values.length + " values");
        bind();
        Tensor out = newF32(shape);
        copyIn(addr(out), MemorySegment.ofArray(values), values.length * 4L);
        return out;
    }

    @Override
    public float[] toHost(Tensor t) {
        if (!onDevice(t)) return t.toFloatArray();
        bind();
        noSyncInStep("toHost");
        int n = Math.toIntExact(t.numel());
        float[] out = new float[n];
        try (Arena a = Arena.ofConfined()) {
            long bytes = (long) n * t.dtype().bytes;
            MemorySegment tmp = a.allocate(Math.max(4, bytes), 64);
            drv.streamSynchronize(stream);
            drv.copyDtoH(tmp, addr(t), bytes);
            if (t.dtype() == DType.F32) {
                MemorySegment.copy(tmp, F32, 0, out, 0, n);
            } else if (t.dtype() == DType.BF16) {
                for (int i = 0; i < n; i++) out[i] = Float.intBitsToFloat((tmp.get(ValueLayout.JAVA_SHORT_UNALIGNED, 2L * i) & 0xffff) << 16);
            } else {
                throw new IllegalArgumentException("toHost of " + t);
            }
        }
        return out;
    }

    /** Uninitialised device memory (no memset): the caller writes every element. */
    @Override
    public Tensor empty(long... shape) {
        bind();
        return newF32(shape);
    }

    @Override
    public Tensor zeros(long... shape) {
        bind();
        Tensor out = newF32(shape);
        if (!graphs.active() || graphs.op(new long[]{StreamOps.OP_MEMSET, addr(out), out.numel() * 4}))
            drv.memsetAsync(addr(out), (byte) 0, out.numel() * 4, stream);
        return out;
    }

    // ---- kernel launches ----

    void launch(String fn, int gx, int gy, int bx, int shared, Object... args) {
        launch3(fn, gx, gy, 1, bx, shared, args);
    }

    void launch3(String fn, int gx, int gy, int gz, int bx, int shared, Object... args) {
        ops.launch(fn, gx, gy, gz, bx, shared, args);
    }

    /** Whether conversions to bf16 run 8 values a thread where aligned (VLM4J_CUDA_CONVERT_X8=0: one a thread). */
    private static final boolean CONVERT_X8 = !"0".equals(System.getenv("VLM4J_CUDA_CONVERT_X8"));

    /** {@code count} float32 values at device address {@code src} as bf16 at {@code dst} (8 a thread where aligned). */
    void toBf16(long src, long dst, long count) {
        long n8 = CONVERT_X8 && src % 16 == 0 && dst % 16 == 0 ? count / 8 : 0;
        if (n8 > 0) elementwise("f32_to_bf16_x8", n8, src, dst, n8);
        if (count > 8 * n8) elementwise("f32_to_bf16_kernel", count - 8 * n8, src + 32 * n8, dst + 16 * n8, count - 8 * n8);
    }

    void elementwise(String fn, long n, Object... args) {
        if (n == 0) return;
        long blocks = (n + BLOCK - 1) / BLOCK;
        launch(fn, Math.toIntExact(blocks), 1, BLOCK, 0, args);
    }

    static int colBlocks(int d) { return (d + BLOCK - 1) / BLOCK; }

    @Override
    public Tensor linear(Tensor x, Tensor w, Tensor bias) {
        bind();
        int in = (int) x.dim(-1), n = rows(x);
        Tensor wd = upload(w);
        if (wd.rank() != 2 || wd.dim(1) != in)
            throw new IllegalArgumentException("linear: x " + x + " does not fit weight " + w);
        int out = (int) wd.dim(0);
        Tensor xd = dev(x);
        Tensor y = newF32(n, out);
        if (n == 1 && GEMV && in % 8 == 0) {
            gemv.product(xd, wd, bias, y, in, out);
        } else if (n > 0) {
            long b = bias == null ? 0 : addr(upload(bias));
            boolean fused;
            if (wd.dtype() == DType.BF16) {
                fused = gemm(bf16Of(xd).address(), addr(wd), b, addr(y), n, in, out, CublasLt.CUDA_R_16BF);
            } else if (wd.dtype() == DType.F32) {
                fused = gemm(addr(xd), addr(wd), b, addr(y), n, in, out, CublasLt.CUDA_R_32F);
            } else {
                throw new IllegalArgumentException("linear: weights of dtype " + wd.dtype());
            }
            if (b != 0 && !fused) elementwise("bias_add", (long) n * out, addr(y), b, (long) n * out, out);
        }
        return y;
    }

    @Override
    public Tensor[] linears(Tensor x, Tensor[] ws, Tensor[] biases) {
        bind();
        if (ws.length > 3 || !gemv.fusable(x, GEMV, ws)) return Backend.super.linears(x, ws, biases);
        Tensor xd = dev(x);
        Tensor[] ys = new Tensor[ws.length];
        for (int i = 0; i < ws.length; i++) ys[i] = newF32(1, ws[i].dim(0));
        gemv.fused(xd, (int) x.dim(-1), ws, biases, ys, null, false);
        return ys;
    }

    @Override
    public Tensor swiGlu(Tensor x, Tensor gateW, Tensor upW) {
        bind();
        if (!gemv.fusable(x, GEMV, gateW, upW) || gateW.dim(0) != upW.dim(0)) return Backend.super.swiGlu(x, gateW, upW);
        Tensor xd = dev(x), y = newF32(1, gateW.dim(0));
        gemv.fused(xd, (int) x.dim(-1), new Tensor[]{gateW, upW}, new Tensor[]{null, null}, new Tensor[]{y}, null, true);
        return y;
    }

    @Override
    public Tensor addLinear(Tensor residual, Tensor x, Tensor w) {
        bind();
        if (!gemv.fusable(x, GEMV, w) || residual.numel() != w.dim(0)) {
            Tensor wd = upload(w);
            int n = rows(x), in = (int) x.dim(-1), out = (int) wd.dim(0);
            boolean typed = wd.dtype() == DType.BF16 || wd.dtype() == DType.F32;
            if (n < 2 || !typed || wd.dim(1) != in || residual.numel() != (long) n * out)
                return Backend.super.addLinear(residual, x, w);
            // several rows (batched decode, prefill, training): the product's epilogue adds the residual
            Tensor xd = dev(x), rd = dev(residual), y = newF32(residual.shape());
            boolean bf16 = wd.dtype() == DType.BF16;
            long xa = bf16 ? bf16Of(xd).address() : addr(xd);
            int type = bf16 ? CublasLt.CUDA_R_16BF : CublasLt.CUDA_R_32F;
            if (!graphs.active() || graphs.op(new long[]{StreamOps.OP_GEMM, xa, addr(wd), addr(rd), addr(y), n, in, out, type, 1}))
                blas.linearAdd(xa, addr(wd), addr(rd), addr(y), n, in, out, type, stream);
            return y;
        }
        Tensor xd = dev(x), rd = dev(residual), y = newF32(residual.shape());
        gemv.fused(xd, (int) x.dim(-1), new Tensor[]{w}, new Tensor[]{null}, new Tensor[]{y}, rd, false);
        return y;
    }

    /** A cuBLASLt product (recorded or checked inside a step); returns whether the bias was fused. */
    private boolean gemm(long x, long w, long b, long y, int n, int in, int out, int type) {
        if (!graphs.active()) return blas.linear(x, w, b, y, n, in, out, type, stream);
        if (graphs.op(new long[]{StreamOps.OP_GEMM, x, w, b, y, n, in, out, type})) {
            boolean fused = blas.linear(x, w, b, y, n, in, out, type, stream);
            graphs.setOutcome(fused ? 1 : 0);
            return fused;
        }
        return graphs.recordedOutcome() == 1;
    }

    /**
     * The bf16 copy of an activation used as a GEMM input. The last few are kept ({@link Bf16Copies}), so the q/k/v
     * (and gate/up) products of one normed input convert it once; every in-place operation forgets them.
     */
    MemorySegment bf16Of(Tensor x) {
        MemorySegment cached = bf16Copies.get(x);
        if (cached != null) return cached;
        long count = x.numel();
        MemorySegment xb = scratch(count * 2);
        toBf16(addr(x), xb.address(), count);
        bf16Copies.put(x, xb);
        return xb;
    }

    /** The first {@code bytes} of device memory {@code d} on the host (waits for the GPU; for tests). */
    byte[] toHostBytes(MemorySegment d, long bytes) {
        bind();
        synchronize();
        try (Arena a = Arena.ofConfined()) {
            MemorySegment h = a.allocate(Math.max(1, bytes));
            drv.copyDtoH(h, d.address(), bytes);
            return h.asSlice(0, bytes).toArray(ValueLayout.JAVA_BYTE);
        }
    }

    /** The bf16 copy of {@code x} if one is at hand (its producer's, or the last conversion), else null; converts nothing. */
    MemorySegment cachedBf16(Tensor x) { return bf16Copies.get(x); }

    /** Records that {@code copy} holds {@code x} as bf16 (written by x's producer), for {@link #bf16Of}. */
    void bf16Copy(Tensor x, MemorySegment copy) { bf16Copies.put(x, copy); }

    void wrote() {
        bf16Copies.clear();
    }

    @Override
    public Tensor rmsNorm(Tensor x, Tensor w, float eps) {
        bind();
        Tensor xd = dev(x), wd = upload(w);
        int d = (int) x.dim(-1), n = rows(x);
        Tensor y = newF32(x.shape());
        if (n == 0) return y;
        int threads = Math.min(1024, ((d / 4) + 31) / 32 * 32);
        if (d % 4 == 0 && d <= 16 * threads && wd.dtype() == DType.F32 && feedsProducts(n)) {
            // the bf16 copy the next products (q/k/v, gate/up) read, written with y instead of by a conversion pass
            MemorySegment yb = scratch(2L * n * d);
            launch("rms_norm_v4_bf16", n, 1, threads, 0, addr(xd), addr(wd), addr(y), yb.address(), d, eps);
            bf16Copy(y, yb);
        } else if (d % 4 == 0 && d <= 16 * threads && wd.dtype() == DType.F32)
            launch("rms_norm_v4", n, 1, threads, 0, addr(xd), addr(wd), addr(y), d, eps);
        else
            launch("rms_norm", n, 1, BLOCK, 0, addr(xd), addr(wd), addr(y), d, eps);
        return y;
    }

    @Override
    public Tensor add(Tensor a, Tensor b) {
        bind();
        if (a.numel() != b.numel()) throw new IllegalArgumentException("add: " + a + " vs " + b);
        Tensor ad = dev(a), bd = dev(b), y = newF32(a.shape());
        elementwise("add_f32", a.numel(), addr(ad), addr(bd), addr(y), a.numel());
        return y;
    }

    @Override
    public Tensor siluMul(Tensor gate, Tensor up) { return siluMul(gate, up, false); }

    /** The bf16 copies of gate and up of the last siluMul that computed its output from them (keepInputs), else null. */
    long[] swiGluRounded;

    /**
     * siluMul; with {@code keepInputs} (a training forward whose backward keeps gate and up compact) the bf16 copies
     * of gate and up are written in the same pass and cached, where the output's is written too.
     */
    Tensor siluMul(Tensor gate, Tensor up, boolean keepInputs) {
        bind();
        swiGluRounded = null;
        Tensor g = dev(gate), u = dev(up), y = newF32(gate.shape());
        long n = gate.numel();
        if (feedsProducts(rows(gate))) {   // the down projection's bf16 operand written alongside
            MemorySegment yb = scratch(2L * n);
            if (n % 4 == 0 && ((addr(g) | addr(u) | addr(y) | yb.address()) & 15) == 0) {
                MemorySegment gb = keepInputs ? scratch(2L * n) : null, ub = keepInputs ? scratch(2L * n) : null;
                elementwise("silu_mul_bf16_x4", n / 4, addr(g), addr(u), addr(y), yb.address(), gb == null ? 0L : gb.address(),
                        ub == null ? 0L : ub.address(), n / 4);
                if (keepInputs) {
                    bf16Copy(g, gb);
                    bf16Copy(u, ub);
                    swiGluRounded = new long[]{gb.address(), ub.address()};
                }
            } else {
                elementwise("silu_mul_bf16", n, addr(g), addr(u), addr(y), yb.address(), n);
            }
            bf16Copy(y, yb);
            return y;
        }
        elementwise("silu_mul", gate.numel(), addr(g), addr(u), addr(y), gate.numel());
        return y;
    }

    /**
     * Whether an activation of n rows made here goes next into bf16 products on the tensor cores (bf16 mode, more rows
     * than the gemv kernels take), so that its producer writes the bf16 copy too ({@link #bf16Of} then finds it).
     */
    boolean feedsProducts(int n) { return precision == Precision.BF16 && n > GEMV_ROWS && !graphs.active(); }

    @Override
    public Tensor gelu(Tensor x) {
        bind();
        Tensor xd = dev(x), y = newF32(x.shape());
        elementwise("gelu_erf", x.numel(), addr(xd), addr(y), x.numel());
        return y;
    }

    @Override
    public Tensor embedding(Tensor table, int[] ids) {
        bind();
        int d = (int) table.dim(1), vocab = (int) table.dim(0);
        for (int id : ids)
            if (id < 0 || id >= vocab) throw new IllegalArgumentException("token id " + id + " outside the vocabulary of " + vocab);
        Tensor t = upload(table), y = newF32(ids.length, d);
        if (ids.length == 0) return y;
        MemorySegment idx = ints(ids);
        launch(t.dtype() == DType.BF16 ? "embedding_bf16" : "embedding_f32", ids.length, colBlocks(d), BLOCK, 0,
                addr(t), idx.address(), addr(y), d);
        java.lang.ref.Reference.reachabilityFence(idx);
        return y;
    }

    @Override
    public Tensor gatherRows(Tensor x, int[] rows) {
        bind();
        int d = (int) x.dim(-1), n = rows(x);
        for (int r : rows) if (r < 0 || r >= n) throw new IllegalArgumentException("gatherRows: row " + r + " of " + n);
        Tensor xd = dev(x), y = newF32(rows.length, d);
        if (rows.length == 0) return y;
        MemorySegment idx = ints(rows);
        launch("gather_rows", rows.length, colBlocks(d), BLOCK, 0, addr(xd), idx.address(), addr(y), d);
        java.lang.ref.Reference.reachabilityFence(idx);
        return y;
    }

    private Tensor deviceDst(Tensor dst, String op) {
        if (!onDevice(dst) || dst.dtype() != DType.F32)
            throw new IllegalArgumentException(op + " needs a float32 destination on " + device + ", got " + dst);
        return dst;
    }

    @Override
    public void scatterRows(Tensor dst, int[] rows, Tensor src) {
        bind();
        wrote();
        deviceDst(dst, "scatterRows");
        int d = (int) dst.dim(-1), n = rows(dst);
        for (int r : rows) if (r < 0 || r >= n) throw new IllegalArgumentException("scatterRows: row " + r + " of " + n);
        if (rows.length == 0) return;
        Tensor s = dev(src);
        MemorySegment idx = ints(rows);
        launch("scatter_rows", rows.length, colBlocks(d), BLOCK, 0, addr(dst), idx.address(), addr(s), d);
        java.lang.ref.Reference.reachabilityFence(idx);
    }

    @Override
    public void copyRows(Tensor dst, int dstRow, Tensor src) {
        bind();
        wrote();
        deviceDst(dst, "copyRows");
        int d = (int) dst.dim(-1);
        long bytes = src.numel() * 4, off = (long) dstRow * d * 4;
        if (off + bytes > dst.numel() * 4)
            throw new IllegalArgumentException("copyRows: " + src + " at row " + dstRow + " overflows " + dst);
        Tensor s = dev(src);
        if (bytes > 0 && (!graphs.active() || graphs.op(new long[]{StreamOps.OP_D2D, addr(dst) + off, addr(s), bytes})))
            drv.copyDtoDAsync(addr(dst) + off, addr(s), bytes, stream);
    }

    @Override
    public Tensor columns(Tensor x, int from, int to) {
        bind();
        int d = (int) x.dim(-1), n = rows(x), w = to - from;
        if (from < 0 || to > d || w < 0) throw new IllegalArgumentException("columns [" + from + ", " + to + ") of " + x);
        Tensor xd = dev(x), y = newF32(n, w);
        if (n > 0 && w > 0) launch("columns_f32", n, colBlocks(w), BLOCK, 0, addr(xd), addr(y), d, from, w);
        return y;
    }

    @Override
    public void rotary(Tensor x, int heads, Tensor cos, Tensor sin) {
        bind();
        wrote();
        deviceDst(x, "rotary");
        int n = rows(x), d = (int) cos.dim(-1);
        if (x.dim(-1) != (long) heads * d) throw new IllegalArgumentException("rotary: " + x + " is not " + heads + " heads of " + d);
        Tensor c = dev(cos), s = dev(sin);
        if (n > 0 && tensorCoreFlash(d) && feedsProducts(n)) {   // the flash attention's bf16 operand written alongside
            MemorySegment xb = scratch(2 * x.numel());
            launch("rotary_f32_bf16", n, heads, Math.min(BLOCK, Math.max(32, d / 2)), 0, addr(x), xb.address(), addr(c), addr(s), heads, d);
            bf16Copy(x, xb);
        } else if (n > 0) {
            launch("rotary_f32", n, heads, Math.min(BLOCK, Math.max(32, d / 2)), 0, addr(x), addr(c), addr(s), heads, d);
        }
    }

    @Override
    public Tensor attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        bind();
        return attention.forward(q, k, v, kvLen, hq, hkv, mask);
    }

    /** A device int64 table of the given values (queued on the stream). */
    MemorySegment longs(long[] v) {
        MemorySegment s = scratch(v.length * 8L);
        copyIn(s.address(), MemorySegment.ofArray(v), v.length * 8L);
        return s;
    }

    Tensor cacheTensor(Tensor t, int width, int minRows, String op) {
        deviceDst(t, op);
        if (t.dim(-1) != width || rows(t) < minRows)
            throw new IllegalArgumentException(op + ": " + t + " does not hold " + minRows + " rows of " + width);
        return t;
    }

    @Override
    public void appendRows(Tensor[] dsts, int[] rows, Tensor src) {
        if (!batchedKernels) {
            Backend.super.appendRows(dsts, rows, src);
            return;
        }
        bind();
        wrote();
        int n = dsts.length, d = (int) src.dim(-1);
        if (rows.length != n || rows(src) != n)
            throw new IllegalArgumentException("appendRows: " + n + " destinations, " + rows.length + " rows, source " + src);
        if (n == 0) return;
        long[] table = new long[2 * n];
        for (int i = 0; i < n; i++) {
            table[i] = addr(cacheTensor(dsts[i], d, rows[i] + 1, "appendRows"));
            table[n + i] = rows[i];
        }
        Tensor s = dev(src);
        MemorySegment t = longs(table);
        launch("append_rows", n, colBlocks(d), BLOCK, 0, addr(s), t.address(), n, d);
        java.lang.ref.Reference.reachabilityFence(t);
    }

    @Override
    public Tensor attentionBatch(Tensor q, Tensor[] keys, Tensor[] values, int[] lens, int hq, int hkv) {
        if (!batchedKernels) return Backend.super.attentionBatch(q, keys, values, lens, hq, hkv);
        bind();
        return attention.batch(q, keys, values, lens, hq, hkv);
    }

    @Override
    public int[] argmaxRows(Tensor x) {
        if (!batchedKernels || !onDevice(x)) return Backend.super.argmaxRows(x);
        bind();
        noSyncInStep("argmaxRows");
        int cols = (int) x.dim(-1), n = rows(x);
        int[] out = new int[n];
        if (n == 0) return out;
        MemorySegment idx = pool.alloc(4L * n);
        launch("argmax_rows", n, 1, 1024, 0, addr(x), idx.address(), cols);
        try (Arena a = Arena.ofConfined()) {
            MemorySegment tmp = a.allocate(4L * n, 64);
            drv.streamSynchronize(stream);
            drv.copyDtoH(tmp, idx.address(), 4L * n);
            MemorySegment.copy(tmp, ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0, out, 0, n);
        }
        java.lang.ref.Reference.reachabilityFence(idx);
        return out;
    }

    @Override
    public void close() {
        if (closed) return;
        bind();
        drv.synchronize();
        ops.close();
        graphs.close();
        blas.close();
        wrote();
        pool.close();
        drv.destroyStream(stream);
        drv.releasePrimaryContext(dev);
        closed = true;
    }

    @Override
    public String toString() { return "CudaBackend[cuda:" + ordinal + " " + name + ", " + precision + "]"; }
}
