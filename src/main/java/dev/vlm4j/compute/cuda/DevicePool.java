package dev.vlm4j.compute.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.util.ArrayDeque;
import java.util.HashMap;
import java.util.Map;
import java.util.concurrent.ConcurrentLinkedQueue;

/**
 * A caching allocator for device memory. Blocks are rounded to size classes (powers of two up to 1 MiB, then
 * multiples of 2 MiB) and reused, so a decode loop allocates from the driver only while it warms up.
 * <p>
 * Activation tensors are freed by the garbage collector: their segment belongs to an automatic arena whose cleanup
 * hands the block back to this pool (the block is reused only by work queued later on the same stream, so pending
 * kernels never see it change). Because the Java heap does not feel device memory, the pool asks for a collection
 * after every {@code gcEveryBytes} of new driver allocations, and before giving up when the device is full.
 * Weights are allocated {@linkplain #allocPermanent permanently}. {@link #close()} frees everything.
 */
final class DevicePool implements AutoCloseable {
    private final CudaDriver drv;
    private final Map<Long, ArrayDeque<Long>> free = new HashMap<>();
    private final ConcurrentLinkedQueue<long[]> released = new ConcurrentLinkedQueue<>();
    /** Every block obtained from the driver: pointer to size. */
    private final Map<Long, Long> owned = new HashMap<>();
    private final long gcEveryBytes;
    private long sinceGc, driverBytes, peakDriverBytes, inUse, peakInUse;
    /** Open scopes, innermost last: the blocks allocated while each was innermost. */
    private final java.util.ArrayList<java.util.ArrayList<Block>> scopes = new java.util.ArrayList<>();

    /** A block handed out by {@link #alloc}; {@code freed} makes its return to the pool happen once. */
    private record Block(long p, long size, java.util.concurrent.atomic.AtomicBoolean freed) {}
    private volatile boolean closed;

    DevicePool(CudaDriver drv, long gcEveryBytes) {
        this.drv = drv;
        this.gcEveryBytes = gcEveryBytes;
    }

    static long sizeClass(long bytes) {
        long b = Math.max(256, bytes);
        if (b <= (1 << 20)) return Long.highestOneBit(b - 1) << 1;
        long step = 2L << 20;
        return (b + step - 1) / step * step;
    }

    private void drain() {
        long[] r;
        while ((r = released.poll()) != null) {
            free.computeIfAbsent(r[1], k -> new ArrayDeque<>()).push(r[0]);
            inUse -= r[1];
        }
    }

    private long driverAlloc(long size) {
        long p = drv.malloc(size);
        for (int attempt = 0; p == 0 && attempt < 3; attempt++) {
            collect();
            ArrayDeque<Long> q = free.get(size);
            if (q != null && !q.isEmpty()) return q.pop();
            releaseCached();
            p = drv.malloc(size);
        }
        if (p == 0) {
            long[] info = drv.memInfo();
            throw new CudaException("out of device memory allocating " + size + " bytes (free " + info[0] + " of "
                    + info[1] + ", this backend holds " + driverBytes + ")", 2);
        }
        owned.put(p, size);
        driverBytes += size;
        peakDriverBytes = Math.max(peakDriverBytes, driverBytes);
        sinceGc += size;
        return p;
    }

    /** Runs a collection and waits briefly for the cleaners to hand blocks back. */
    private void collect() {
        System.gc();
        try { Thread.sleep(20); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        drain();
        sinceGc = 0;
    }

    /**
     * Collects garbage activations and gives every cached block back to the driver (the caller has synchronised the
     * stream, so no queued work still uses a freed block).
     */
    synchronized void trim() {
        if (closed) return;
        collect();
        releaseCached();
    }

    /** Gives cached (unused) blocks back to the driver. */
    private void releaseCached() {
        for (ArrayDeque<Long> q : free.values()) {
            for (Long p : q) {
                Long s = owned.remove(p);
                if (s != null) driverBytes -= s;
                drv.free(p);
            }
            q.clear();
        }
    }

    private long take(long size) {
        drain();
        if (sinceGc > gcEveryBytes) collect();
        ArrayDeque<Long> q = free.get(size);
        if (q != null && !q.isEmpty()) return q.pop();
        return driverAlloc(size);
    }

    /** An integer environment setting, or {@code dflt} when unset; a value that is not a number is reported and ignored. */
    static int intSetting(String name, int dflt) {
        String v = System.getenv(name);
        if (v == null || v.isBlank()) return dflt;
        try {
            return Integer.parseInt(v.trim());
        } catch (NumberFormatException e) {
            System.err.println("warning: " + name + "=" + v + " is not a whole number; using " + dflt);
            return dflt;
        }
    }

    /**
     * A block returned to the pool when the segment becomes unreachable, or when the innermost open
     * {@linkplain #openScope scope} closes, whichever comes first.
     */
    synchronized MemorySegment alloc(long bytes) {
        if (closed) throw new IllegalStateException("the CUDA backend is closed");
        long size = sizeClass(bytes);
        long p = take(size);
        inUse += size;
        peakInUse = Math.max(peakInUse, inUse);
        ConcurrentLinkedQueue<long[]> back = released;
        java.util.concurrent.atomic.AtomicBoolean freed = new java.util.concurrent.atomic.AtomicBoolean();
        if (!scopes.isEmpty()) scopes.get(scopes.size() - 1).add(new Block(p, size, freed));
        return MemorySegment.ofAddress(p).reinterpret(bytes, Arena.ofAuto(), s -> {
            if (freed.compareAndSet(false, true)) back.add(new long[]{p, size});
        });
    }

    /** Starts recording the blocks {@link #alloc} hands out, to free them at {@link #closeScope}. */
    synchronized void openScope() { scopes.add(new java.util.ArrayList<>()); }

    /**
     * Frees every block allocated since the matching {@link #openScope} (queued work on the stream still sees them:
     * a freed block is only handed out again for work queued after it) except the blocks holding one of the device
     * addresses {@code keep} (0s ignored), which move to the enclosing scope if there is one. The segments of freed
     * blocks must no longer be used.
     */
    synchronized void closeScope(long... keep) {
        if (scopes.isEmpty()) throw new IllegalStateException("closeScope without openScope");
        long[] k = keep.clone();
        java.util.Arrays.sort(k);
        java.util.ArrayList<Block> blocks = scopes.remove(scopes.size() - 1);
        for (Block b : blocks) {
            int i = java.util.Arrays.binarySearch(k, b.p);
            if (i < 0) i = -i - 1;   // the first kept address >= the block's start
            if (i < k.length && k[i] != 0 && k[i] < b.p + b.size) {
                if (!scopes.isEmpty()) scopes.get(scopes.size() - 1).add(b);
                continue;
            }
            if (b.freed.compareAndSet(false, true)) {
                free.computeIfAbsent(b.size, x -> new ArrayDeque<>()).push(b.p);
                inUse -= b.size;
            }
        }
    }

    /** Bytes of blocks handed out and not yet returned (activations in use), and the most since {@link #resetPeakInUse}. */
    synchronized long[] inUse() {
        drain();
        return new long[]{inUse, peakInUse};
    }

    synchronized void resetPeakInUse() {
        drain();
        peakInUse = inUse;
    }

    /** A block that stays until {@link #close()} (weights). */
    synchronized MemorySegment allocPermanent(long bytes) {
        if (closed) throw new IllegalStateException("the CUDA backend is closed");
        long size = Math.max(256, (bytes + 255) & ~255L);
        long p = driverAlloc(size);
        sinceGc -= size;   // weights are not garbage
        inUse += size;
        peakInUse = Math.max(peakInUse, inUse);
        return MemorySegment.ofAddress(p).reinterpret(bytes);
    }

    synchronized long driverBytes() { return driverBytes; }

    synchronized long peakDriverBytes() { return peakDriverBytes; }

    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        for (long p : owned.keySet()) drv.free(p);
        owned.clear();
        free.clear();
        driverBytes = 0;
    }
}
