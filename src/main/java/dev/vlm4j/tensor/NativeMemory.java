package dev.vlm4j.tensor;

import java.lang.foreign.*;
import java.lang.invoke.MethodHandle;

/**
 * Large off-heap buffers (quantized weights) from the C allocator, freed when unreachable. Unlike
 * {@code Arena.allocate}, they do not count against {@code -XX:MaxDirectMemorySize} (which defaults to the heap
 * size), so a 9 GB model loads with a small heap. Falls back to {@code Arena.ofAuto()} when native access is denied.
 */
final class NativeMemory {
    private static final MethodHandle ALIGNED_ALLOC, FREE;

    static {
        MethodHandle a = null, f = null;
        try {
            Linker l = Linker.nativeLinker();
            SymbolLookup c = l.defaultLookup();
            a = l.downcallHandle(c.find("aligned_alloc").orElseThrow(),
                    FunctionDescriptor.of(ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG));
            f = l.downcallHandle(c.find("free").orElseThrow(), FunctionDescriptor.ofVoid(ValueLayout.ADDRESS));
        } catch (Throwable e) {
            a = f = null;
        }
        ALIGNED_ALLOC = a;
        FREE = f;
    }

    private NativeMemory() {}

    /** An uninitialised segment of at least {@code bytes}, 64-byte aligned, freed by the GC when unreachable. */
    static MemorySegment allocate(long bytes) {
        long size = (bytes + 63) / 64 * 64;
        if (ALIGNED_ALLOC != null) {
            try {
                MemorySegment p = (MemorySegment) ALIGNED_ALLOC.invokeExact(64L, size);
                if (p.address() != 0) return p.reinterpret(size, Arena.ofAuto(), NativeMemory::free);
            } catch (Throwable ignored) { /* fall back */ }
        }
        return Arena.ofAuto().allocate(size, 64);
    }

    private static void free(MemorySegment p) {
        try {
            FREE.invokeExact(p);
        } catch (Throwable ignored) { }
    }
}
