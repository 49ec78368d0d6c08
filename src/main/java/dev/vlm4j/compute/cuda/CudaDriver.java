package dev.vlm4j.compute.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_FLOAT;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * Hand-written java.lang.foreign bindings for the part of the CUDA driver API (libcuda.so.1) that vlm4j uses.
 * Device pointers are {@code long}s; contexts, modules, functions and streams are opaque {@link MemorySegment}
 * addresses. Every call checks its CUresult and throws {@link CudaException} with the driver's message.
 */
final class CudaDriver {
    private static volatile CudaDriver instance;
    private static volatile String loadError;

    private final MethodHandle cuInit, cuDeviceGetCount, cuDeviceGet, cuDeviceGetName, cuDeviceGetAttribute,
            cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease, cuCtxSetCurrent, cuCtxSynchronize, cuMemAlloc,
            cuMemFree, cuMemcpyHtoD, cuMemcpyDtoH, cuMemcpyDtoD, cuMemcpyHtoDAsync, cuMemcpyDtoHAsync,
            cuMemcpyDtoDAsync, cuMemsetD8, cuModuleLoadData, cuModuleGetFunction, cuLaunchKernel, cuStreamCreate,
            cuStreamSynchronize, cuStreamDestroy, cuGetErrorString, cuMemGetInfo, cuMemHostAlloc, cuMemFreeHost,
            cuMemsetD8Async, cuFuncSetAttribute, cuFuncGetAttribute, cuStreamBeginCapture, cuStreamEndCapture, cuGraphInstantiate,
            cuGraphLaunch, cuGraphExecDestroy, cuGraphDestroy, cuEventCreate, cuEventRecord, cuEventSynchronize,
            cuEventDestroy, cuEventElapsedTime;

    static final int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76,
            CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;

    private CudaDriver(SymbolLookup lib) {
        cuInit = NativeLibs.fn(lib, "cuInit", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        cuDeviceGetCount = NativeLibs.fn(lib, "cuDeviceGetCount", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuDeviceGet = NativeLibs.fn(lib, "cuDeviceGet", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDeviceGetName = NativeLibs.fn(lib, "cuDeviceGetName", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDeviceGetAttribute = NativeLibs.fn(lib, "cuDeviceGetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuDevicePrimaryCtxRetain = NativeLibs.fn(lib, "cuDevicePrimaryCtxRetain", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuDevicePrimaryCtxRelease = NativeLibs.fn(lib, "cuDevicePrimaryCtxRelease_v2", FunctionDescriptor.of(JAVA_INT, JAVA_INT));
        cuCtxSetCurrent = NativeLibs.fn(lib, "cuCtxSetCurrent", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuCtxSynchronize = NativeLibs.fn(lib, "cuCtxSynchronize", FunctionDescriptor.of(JAVA_INT));
        cuMemAlloc = NativeLibs.fn(lib, "cuMemAlloc_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG));
        cuMemFree = NativeLibs.fn(lib, "cuMemFree_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG));
        cuMemcpyHtoD = NativeLibs.fn(lib, "cuMemcpyHtoD_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG));
        cuMemcpyDtoH = NativeLibs.fn(lib, "cuMemcpyDtoH_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG));
        cuMemcpyDtoD = NativeLibs.fn(lib, "cuMemcpyDtoD_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG));
        cuMemcpyHtoDAsync = NativeLibs.fn(lib, "cuMemcpyHtoDAsync_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, ADDRESS, JAVA_LONG, ADDRESS));
        cuMemcpyDtoHAsync = NativeLibs.fn(lib, "cuMemcpyDtoHAsync_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_LONG, ADDRESS));
        cuMemcpyDtoDAsync = NativeLibs.fn(lib, "cuMemcpyDtoDAsync_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_LONG, JAVA_LONG, ADDRESS));
        cuMemsetD8 = NativeLibs.fn(lib, "cuMemsetD8_v2", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_BYTE, JAVA_LONG));
        cuModuleLoadData = NativeLibs.fn(lib, "cuModuleLoadData", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuModuleGetFunction = NativeLibs.fn(lib, "cuModuleGetFunction", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuLaunchKernel = NativeLibs.fn(lib, "cuLaunchKernel", FunctionDescriptor.of(JAVA_INT, ADDRESS,
                JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, JAVA_INT, ADDRESS, ADDRESS, ADDRESS));
        cuStreamCreate = NativeLibs.fn(lib, "cuStreamCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamSynchronize = NativeLibs.fn(lib, "cuStreamSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuStreamDestroy = NativeLibs.fn(lib, "cuStreamDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuGetErrorString = NativeLibs.fn(lib, "cuGetErrorString", FunctionDescriptor.of(JAVA_INT, JAVA_INT, ADDRESS));
        cuMemGetInfo = NativeLibs.fn(lib, "cuMemGetInfo_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuMemHostAlloc = NativeLibs.fn(lib, "cuMemHostAlloc", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_LONG, JAVA_INT));
        cuMemFreeHost = NativeLibs.fn(lib, "cuMemFreeHost", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuMemsetD8Async = NativeLibs.fn(lib, "cuMemsetD8Async", FunctionDescriptor.of(JAVA_INT, JAVA_LONG, JAVA_BYTE, JAVA_LONG, ADDRESS));
        cuFuncSetAttribute = NativeLibs.fn(lib, "cuFuncSetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, JAVA_INT));
        cuFuncGetAttribute = NativeLibs.fn(lib, "cuFuncGetAttribute", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
        cuStreamBeginCapture = NativeLibs.fn(lib, "cuStreamBeginCapture_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuStreamEndCapture = NativeLibs.fn(lib, "cuStreamEndCapture", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphInstantiate = NativeLibs.fn(lib, "cuGraphInstantiateWithFlags", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, JAVA_LONG));
        cuGraphLaunch = NativeLibs.fn(lib, "cuGraphLaunch", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuGraphExecDestroy = NativeLibs.fn(lib, "cuGraphExecDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuGraphDestroy = NativeLibs.fn(lib, "cuGraphDestroy", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuEventCreate = NativeLibs.fn(lib, "cuEventCreate", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT));
        cuEventRecord = NativeLibs.fn(lib, "cuEventRecord", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
        cuEventSynchronize = NativeLibs.fn(lib, "cuEventSynchronize", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuEventDestroy = NativeLibs.fn(lib, "cuEventDestroy_v2", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        cuEventElapsedTime = optionalFn(lib, FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS), "cuEventElapsedTime_v2", "cuEventElapsedTime");
    }

    /** cuStreamBeginCapture mode that allows other API calls (allocation) on this thread while capturing. */
    static final int CU_STREAM_CAPTURE_MODE_RELAXED = 2;

    void beginCapture(MemorySegment stream) {
        try { check((int) cuStreamBeginCapture.invokeExact(stream, CU_STREAM_CAPTURE_MODE_RELAXED), "cuStreamBeginCapture"); }
        catch (Throwable t) { throw rethrow(t); }
    }

    /** Ends a capture and returns the graph (throws when the capture was invalidated). */
    MemorySegment endCapture(MemorySegment stream) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuStreamEndCapture.invokeExact(stream, p), "cuStreamEndCapture");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    MemorySegment instantiate(MemorySegment graph) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuGraphInstantiate.invokeExact(p, graph, 0L), "cuGraphInstantiateWithFlags");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void graphLaunch(MemorySegment exec, MemorySegment stream) {
        try { check((int) cuGraphLaunch.invokeExact(exec, stream), "cuGraphLaunch"); } catch (Throwable t) { throw rethrow(t); }
    }

    void graphExecDestroy(MemorySegment exec) {
        try { check((int) cuGraphExecDestroy.invokeExact(exec), "cuGraphExecDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    void graphDestroy(MemorySegment graph) {
        try { check((int) cuGraphDestroy.invokeExact(graph), "cuGraphDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** An event without timing (CU_EVENT_DISABLE_TIMING), for ordering only. */
    MemorySegment createEvent() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuEventCreate.invokeExact(p, 2), "cuEventCreate");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    private static MethodHandle optionalFn(SymbolLookup lib, FunctionDescriptor fd, String... names) {
        for (String n : names) {
            try {
                return NativeLibs.fn(lib, n, fd);
            } catch (RuntimeException | LinkageError e) {
                // try the next name
            }
        }
        return null;
    }

    /** An event with timing (for {@link CudaProfiler}). */
    MemorySegment createTimingEvent() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuEventCreate.invokeExact(p, 0), "cuEventCreate");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    /** Milliseconds between two recorded, completed timing events. */
    float elapsedMs(MemorySegment start, MemorySegment end) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment ms = a.allocate(JAVA_FLOAT);
            if (cuEventElapsedTime == null) throw new CudaException("the driver has no cuEventElapsedTime", -1);
            check((int) cuEventElapsedTime.invokeExact(ms, start, end), "cuEventElapsedTime");
            return ms.get(JAVA_FLOAT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void recordEvent(MemorySegment event, MemorySegment stream) {
        try { check((int) cuEventRecord.invokeExact(event, stream), "cuEventRecord"); } catch (Throwable t) { throw rethrow(t); }
    }

    void eventSynchronize(MemorySegment event) {
        try { check((int) cuEventSynchronize.invokeExact(event), "cuEventSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    void destroyEvent(MemorySegment event) {
        try { check((int) cuEventDestroy.invokeExact(event), "cuEventDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    static final int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8, CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES = 3,
            CU_FUNC_ATTRIBUTE_NUM_REGS = 4;

    /** Page-locked host memory of {@code bytes} (for asynchronous copies); free with {@link #freeHost}. */
    MemorySegment allocHost(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuMemHostAlloc.invokeExact(p, bytes, 0), "cuMemHostAlloc(" + bytes + ")");
            return p.get(ADDRESS, 0).reinterpret(bytes);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void freeHost(MemorySegment p) {
        try { check((int) cuMemFreeHost.invokeExact(p), "cuMemFreeHost"); } catch (Throwable t) { throw rethrow(t); }
    }

    void memsetAsync(long dst, byte value, long bytes, MemorySegment stream) {
        try { check((int) cuMemsetD8Async.invokeExact(dst, value, bytes, stream), "cuMemsetD8Async"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** An attribute of a loaded kernel (registers per thread, local memory per thread: what the JIT made of its PTX). */
    int functionAttribute(MemorySegment f, int attr) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment v = a.allocate(JAVA_INT);
            check((int) cuFuncGetAttribute.invokeExact(v, attr, f), "cuFuncGetAttribute");
            return v.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void setFunctionAttribute(MemorySegment f, int attr, int value) {
        try { check((int) cuFuncSetAttribute.invokeExact(f, attr, value), "cuFuncSetAttribute"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** The driver, loaded and initialised once; throws {@link IllegalStateException} saying why when it cannot be. */
    static CudaDriver get() {
        CudaDriver d = instance;
        if (d != null) return d;
        synchronized (CudaDriver.class) {
            if (instance != null) return instance;
            if (loadError != null) throw new IllegalStateException(loadError);
            try {
                SymbolLookup lib = NativeLibs.open("VLM4J_CUDA_LIB", List.of("libcuda.so.1", "libcuda.so"), Arena.global());
                d = new CudaDriver(lib);
                d.check(d.callInt(d.cuInit, 0), "cuInit");
                instance = d;
                return d;
            } catch (RuntimeException e) {
                loadError = "CUDA driver unavailable: " + e.getMessage();
                throw new IllegalStateException(loadError, e);
            }
        }
    }

    private int callInt(MethodHandle h, int a) {
        try { return (int) h.invokeExact(a); } catch (Throwable t) { throw rethrow(t); }
    }

    static RuntimeException rethrow(Throwable t) {
        if (t instanceof RuntimeException r) return r;
        if (t instanceof Error e) throw e;
        return new IllegalStateException(t);
    }

    String errorString(int code) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            int rc = (int) cuGetErrorString.invokeExact(code, p);
            if (rc != 0 || p.get(ADDRESS, 0).address() == 0) return "CUDA error " + code;
            return p.get(ADDRESS, 0).reinterpret(1024).getString(0) + " (" + code + ")";
        } catch (Throwable t) {
            return "CUDA error " + code;
        }
    }

    void check(int rc, String what) {
        if (rc != 0) throw new CudaException(what + ": " + errorString(rc), rc);
    }

    int deviceCount() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_INT);
            check((int) cuDeviceGetCount.invokeExact(n), "cuDeviceGetCount");
            return n.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    int device(int ordinal) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_INT);
            check((int) cuDeviceGet.invokeExact(n, ordinal), "cuDeviceGet(" + ordinal + ")");
            return n.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    String deviceName(int dev) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment s = a.allocate(256);
            check((int) cuDeviceGetName.invokeExact(s, 256, dev), "cuDeviceGetName");
            return s.getString(0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    int attribute(int attr, int dev) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment n = a.allocate(JAVA_INT);
            check((int) cuDeviceGetAttribute.invokeExact(n, attr, dev), "cuDeviceGetAttribute");
            return n.get(JAVA_INT, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    MemorySegment primaryContext(int dev) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuDevicePrimaryCtxRetain.invokeExact(p, dev), "cuDevicePrimaryCtxRetain");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void releasePrimaryContext(int dev) {
        try { check((int) cuDevicePrimaryCtxRelease.invokeExact(dev), "cuDevicePrimaryCtxRelease"); } catch (Throwable t) { throw rethrow(t); }
    }

    void setCurrent(MemorySegment ctx) {
        try { check((int) cuCtxSetCurrent.invokeExact(ctx), "cuCtxSetCurrent"); } catch (Throwable t) { throw rethrow(t); }
    }

    void synchronize() {
        try { check((int) cuCtxSynchronize.invokeExact(), "cuCtxSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** cuMemAlloc; returns 0 instead of throwing when the device is out of memory (error 2). */
    long malloc(long bytes) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(JAVA_LONG);
            int rc = (int) cuMemAlloc.invokeExact(p, bytes);
            if (rc == 2) return 0;
            check(rc, "cuMemAlloc(" + bytes + ")");
            return p.get(JAVA_LONG, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void free(long ptr) {
        try { check((int) cuMemFree.invokeExact(ptr), "cuMemFree"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyHtoD(long dst, MemorySegment src, long bytes) {
        try { check((int) cuMemcpyHtoD.invokeExact(dst, src, bytes), "cuMemcpyHtoD"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyDtoH(MemorySegment dst, long src, long bytes) {
        try { check((int) cuMemcpyDtoH.invokeExact(dst, src, bytes), "cuMemcpyDtoH"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyDtoD(long dst, long src, long bytes) {
        try { check((int) cuMemcpyDtoD.invokeExact(dst, src, bytes), "cuMemcpyDtoD"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyHtoDAsync(long dst, MemorySegment src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyHtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyHtoDAsync"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyDtoHAsync(MemorySegment dst, long src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyDtoHAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoHAsync"); } catch (Throwable t) { throw rethrow(t); }
    }

    void copyDtoDAsync(long dst, long src, long bytes, MemorySegment stream) {
        try { check((int) cuMemcpyDtoDAsync.invokeExact(dst, src, bytes, stream), "cuMemcpyDtoDAsync"); } catch (Throwable t) { throw rethrow(t); }
    }

    void memset(long dst, byte value, long bytes) {
        try { check((int) cuMemsetD8.invokeExact(dst, value, bytes), "cuMemsetD8"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** Loads a module from a NUL-terminated PTX image. */
    MemorySegment loadModule(MemorySegment image) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuModuleLoadData.invokeExact(p, image), "cuModuleLoadData");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    MemorySegment function(MemorySegment module, String name) {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuModuleGetFunction.invokeExact(p, module, a.allocateFrom(name)), "cuModuleGetFunction(" + name + ")");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void launch(MemorySegment f, int gx, int gy, int gz, int bx, int by, int bz, int shared, MemorySegment stream,
                MemorySegment params) {
        try {
            check((int) cuLaunchKernel.invokeExact(f, gx, gy, gz, bx, by, bz, shared, stream, params, MemorySegment.NULL),
                    "cuLaunchKernel");
        } catch (Throwable t) { throw rethrow(t); }
    }

    MemorySegment createStream() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment p = a.allocate(ADDRESS);
            check((int) cuStreamCreate.invokeExact(p, 0), "cuStreamCreate");
            return p.get(ADDRESS, 0);
        } catch (Throwable t) { throw rethrow(t); }
    }

    void streamSynchronize(MemorySegment s) {
        try { check((int) cuStreamSynchronize.invokeExact(s), "cuStreamSynchronize"); } catch (Throwable t) { throw rethrow(t); }
    }

    void destroyStream(MemorySegment s) {
        try { check((int) cuStreamDestroy.invokeExact(s), "cuStreamDestroy"); } catch (Throwable t) { throw rethrow(t); }
    }

    /** {free, total} bytes of the current context's device. */
    long[] memInfo() {
        try (Arena a = Arena.ofConfined()) {
            MemorySegment f = a.allocate(JAVA_LONG), t = a.allocate(JAVA_LONG);
            check((int) cuMemGetInfo.invokeExact(f, t), "cuMemGetInfo");
            return new long[]{f.get(JAVA_LONG, 0), t.get(JAVA_LONG, 0)};
        } catch (Throwable t) { throw rethrow(t); }
    }

}
