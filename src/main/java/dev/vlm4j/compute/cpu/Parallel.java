package dev.vlm4j.compute.cpu;

import java.util.concurrent.ForkJoinPool;
import java.util.concurrent.ForkJoinWorkerThread;
import java.util.concurrent.RecursiveAction;
import java.util.function.IntConsumer;

/**
 * A persistent worker pool for the CPU kernels: {@code forEach(n, body)} runs {@code body(i)} for i in [0, n)
 * split into contiguous chunks, one task per worker, without creating threads per call. A loop started inside
 * another one (on a worker of this pool) runs inline on that worker: the outer loop already uses every worker.
 */
public final class Parallel {
    private static volatile int threads = Math.max(1, Integer.getInteger("vlm4j.threads", Runtime.getRuntime().availableProcessors()));
    private static final ForkJoinPool POOL = new ForkJoinPool(Math.max(1, Runtime.getRuntime().availableProcessors()));

    private static final int CHUNKS_PER_WORKER = Integer.getInteger("vlm4j.chunksPerWorker", 4);
    /** Chunks per worker of the bandwidth-bound decode products ({@code -Dvlm4j.decodeChunksPerWorker}). */
    static final int DECODE_CHUNKS_PER_WORKER = Integer.getInteger("vlm4j.decodeChunksPerWorker", 16);

    private Parallel() {}

    public static int threads() { return threads; }

    /** Sets the number of workers used by later calls (at most the number of processors). */
    public static void setThreads(int n) {
        threads = Math.max(1, Math.min(n, Runtime.getRuntime().availableProcessors()));
    }

    /** Chunked range body: {@code body.run(from, to)} for disjoint ranges covering [0, n). */
    public interface Range { void run(int from, int to); }

    public static void forRange(int n, int minChunk, Range body) {
        forRange(n, minChunk, CHUNKS_PER_WORKER, body);
    }

    /**
     * As {@link #forRange(int, int, Range)} with {@code perWorker} chunks per worker: the decode products use more
     * (a worker slowed by another guest on its core then holds up the region by a smaller piece).
     */
    public static void forRange(int n, int minChunk, int perWorker, Range body) {
        int t = threads;
        if (t == 1 || n <= minChunk || Thread.currentThread() instanceof ForkJoinWorkerThread w && w.getPool() == POOL) {
            body.run(0, n);
            return;
        }
        // A few chunks per worker, so work stealing evens out cores slowed by other load on the machine.
        int chunks = Math.min(t * perWorker, (n + minChunk - 1) / minChunk);
        POOL.invoke(new RecursiveAction() {
            @Override
            protected void compute() {
                RecursiveAction[] parts = new RecursiveAction[chunks];
                for (int c = 0; c < chunks; c++) {
                    final int from = (int) ((long) n * c / chunks), to = (int) ((long) n * (c + 1) / chunks);
                    parts[c] = new RecursiveAction() {
                        @Override protected void compute() { body.run(from, to); }
                    };
                }
                invokeAll(parts);
            }
        });
    }

    /**
     * A float buffer of at least {@code size} held in {@code cache} for the calling thread and reused across calls;
     * a fresh one when called from a pool worker (whose waiting {@code forRange} may run other tasks on the same
     * thread, which would share the cached buffer).
     */
    static float[] scratch(ThreadLocal<float[]> cache, int size) {
        if (Thread.currentThread() instanceof java.util.concurrent.ForkJoinWorkerThread) return new float[size];
        float[] b = cache.get();
        if (b.length < size) cache.set(b = new float[size]);
        return b;
    }

    public static void forEach(int n, IntConsumer body) {
        forRange(n, 1, (a, b) -> { for (int i = a; i < b; i++) body.accept(i); });
    }
}
