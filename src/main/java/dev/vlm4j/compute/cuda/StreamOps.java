package dev.vlm4j.compute.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Map;

/**
 * The two ways {@link CudaBackend} puts work on its stream, kernel launches and host-to-device copies, each issued
 * eagerly, or recorded (capture) / checked without issuing (dry run) while a {@link StepGraphs step graph} is active.
 */
final class StreamOps implements AutoCloseable {
    /** Operation kinds in a step graph's signatures. */
    static final long OP_COPY = 1, OP_KERNEL = 2, OP_MEMSET = 3, OP_D2D = 4, OP_GEMM = 5;
    /**
     * Page-locked staging ring for small host-to-device copies (token ids, rope tables, cache pointer tables): they
     * are queued on the stream with cuMemcpyHtoDAsync, so the host never waits for the GPU to send them. When the
     * ring wraps, the stream is synchronised first (every earlier copy out of it has then completed).
     */
    private static final long STAGING = 16L << 20, STAGED_MAX = 2L << 20;

    private final CudaDriver drv;
    private final MemorySegment stream;
    private final StepGraphs graphs;
    private final Map<String, MemorySegment> fns;
    /** Reused kernel-argument block: argument values (8 bytes each) and the pointer array cuLaunchKernel reads. */
    private final Arena arena = Arena.ofShared();
    private final MemorySegment argValues = arena.allocate(8L * 32, 16), argPointers = arena.allocate(ValueLayout.ADDRESS, 32);
    private final MemorySegment staging;
    private long stagingOff;

    StreamOps(CudaDriver drv, MemorySegment stream, StepGraphs graphs, Map<String, MemorySegment> fns) {
        this.drv = drv;
        this.stream = stream;
        this.graphs = graphs;
        this.fns = fns;
        this.staging = drv.allocHost(STAGING);
        // argPointers[i] always points at slot i of argValues
        for (int i = 0; i < 32; i++) argPointers.setAtIndex(ValueLayout.ADDRESS, i, argValues.asSlice(8L * i, 8));
    }

    /** Launches kernel {@code fn}; arguments are Long (pointers, 64-bit), Integer or Float. */
    void launch(String fn, int gx, int gy, int gz, int bx, int shared, Object... args) {
        MemorySegment f = fns.get(fn);
        if (graphs.active()) {
            long[] sig = new long[7 + args.length];
            sig[0] = OP_KERNEL; sig[1] = f.address(); sig[2] = gx; sig[3] = gy; sig[4] = gz; sig[5] = bx; sig[6] = shared;
            for (int i = 0; i < args.length; i++) {
                sig[7 + i] = switch (args[i]) {
                    case Long l -> l;
                    case Integer n -> n;
                    case Float x -> Float.floatToRawIntBits(x);
                    default -> throw new IllegalArgumentException("kernel argument " + args[i]);
                };
            }
            if (!graphs.op(sig)) return;
        }
        // cuLaunchKernel copies the arguments before it returns, so one block serves every launch
        for (int i = 0; i < args.length; i++) {
            long off = 8L * i;
            switch (args[i]) {
                case Long l -> argValues.set(ValueLayout.JAVA_LONG, off, l);
                case Integer n -> argValues.set(ValueLayout.JAVA_INT, off, n);
                case Float v -> argValues.set(ValueLayout.JAVA_FLOAT, off, v);
                default -> throw new IllegalArgumentException("kernel argument " + args[i]);
            }
        }
        MemorySegment t = profiler == null || graphs.active() ? null : profiler.start();
        drv.launch(f, gx, gy, gz, bx, 1, 1, shared, stream, argPointers);
        if (t != null) profiler.end(t, fn);
    }

    /** Times every launch from now on (see {@link CudaProfiler}). */
    void profiler(CudaProfiler p) { profiler = p; }

    private CudaProfiler profiler;

    /**
     * Copies host bytes (any segment, heap or native) to device memory: small copies are queued from the staging
     * ring, large ones are synchronous; inside a step graph they go through the graph's pinned slots.
     */
    void copyIn(long dst, MemorySegment src, long bytes) {
        if (bytes == 0) return;
        if (graphs.active()) {
            MemorySegment slot = graphs.slot(bytes);
            MemorySegment.copy(src, 0, slot, 0, bytes);
            if (graphs.op(new long[]{OP_COPY, dst, bytes, slot.address()})) drv.copyHtoDAsync(dst, slot, bytes, stream);
            return;
        }
        if (bytes <= STAGED_MAX) {
            long at = (stagingOff + 255) & ~255L;
            if (at + bytes > STAGING) {
                drv.streamSynchronize(stream);
                at = 0;
            }
            MemorySegment.copy(src, 0, staging, at, bytes);
            drv.copyHtoDAsync(dst, staging.asSlice(at, bytes), bytes, stream);
            stagingOff = at + bytes;
            return;
        }
        if (src.isNative()) {
            drv.copyHtoD(dst, src, bytes);
            return;
        }
        try (Arena a = Arena.ofConfined()) {
            long chunk = 64L << 20;
            MemorySegment tmp = a.allocate(Math.min(bytes, chunk), 64);
            for (long off = 0; off < bytes; off += chunk) {
                long n = Math.min(chunk, bytes - off);
                MemorySegment.copy(src, off, tmp, 0, n);
                drv.copyHtoD(dst + off, tmp, n);
            }
        }
    }

    @Override
    public void close() {
        drv.freeHost(staging);
        arena.close();
    }
}
