package dev.vlm4j.compute.cpu;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.locks.LockSupport;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.IntConsumer;

/**
 * The CPU kernels' worker pool: {@code forRange(n, minChunk, body)} runs {@code body.run(from, to)} over disjoint
 * ranges covering [0, n), a few chunks per worker handed out dynamically, on {@code threads() - 1} persistent workers
 * <b>and the calling thread</b>, without creating threads or tasks per call.
 * <p>Why not a ForkJoinPool: a decode step is ~300 short parallel regions (one per product group, norm, ...). Handing
 * each to parked pool threads and parking the caller until they finish cost 20-40 us a region on the build machine
 * (two futex wake-ups), several percent of a token. Here the caller works on the region itself, and idle workers spin
 * ({@link Thread#onSpinWait}) for {@link #SPIN_NANOS} before they park, so the regions of one step find them awake.
 * <p>A region started inside another one (from a body, on a worker or on the caller) runs inline: the outer region
 * already uses every worker. When another thread holds the pool, a caller runs its region alone rather than wait.
 */
public final class Parallel {
    private static final int PROCESSORS = Math.max(1, Runtime.getRuntime().availableProcessors());
    private static volatile int threads = Math.max(1, Math.min(PROCESSORS, Integer.getInteger("vlm4j.threads", PROCESSORS)));

    private static final int CHUNKS_PER_WORKER = Integer.getInteger("vlm4j.chunksPerWorker", 4);
    /** How long an idle worker spins before it parks ({@code -Dvlm4j.spinMicros}, default 2000). */
    static final long SPIN_NANOS = TimeUnit.MICROSECONDS.toNanos(Long.getLong("vlm4j.spinMicros", 2000));

    /** One region: its body, its chunks, the next chunk to hand out and the chunks not yet finished. */
    private static final class Job {
        final Range body;
        final int n, chunks, helpers, minChunk;
        final AtomicInteger next = new AtomicInteger(), pending;
        volatile Throwable failure;

        Job(Range body, int n, int chunks, int helpers) {
            this.body = body;
            this.n = n;
            this.chunks = chunks;
            this.helpers = helpers;
            this.minChunk = 0;
            this.pending = new AtomicInteger(chunks);
        }

        /** A guided job ({@link #forRangeGuided}): chunks is -1 and pending counts the items not yet finished. */
        Job(Range body, int n, int minChunk, int helpers, boolean guided) {
            this.body = body;
            this.n = n;
            this.chunks = -1;
            this.helpers = helpers;
            this.minChunk = minChunk;
            this.pending = new AtomicInteger(n);
        }

        /** Runs chunks (or pieces) until none is left (a failed one still counts as finished; the first failure is kept). */
        void work() {
            if (chunks < 0) {
                int parts = 2 * (helpers + 1);
                for (int p; (p = next.get()) < n; ) {
                    int size = Math.min(n - p, Math.max(minChunk, (n - p) / parts));
                    if (!next.compareAndSet(p, p + size)) continue;
                    try {
                        body.run(p, p + size);
                    } catch (Throwable t) {
                        if (failure == null) failure = t;
                    } finally {
                        pending.addAndGet(-size);
                    }
                }
                return;
            }
            for (int c; (c = next.getAndIncrement()) < chunks; ) {
                try {
                    body.run((int) ((long) n * c / chunks), (int) ((long) n * (c + 1) / chunks));
                } catch (Throwable t) {
                    if (failure == null) failure = t;
                } finally {
                    pending.decrementAndGet();
                }
            }
        }
    }

    private static final class Worker extends Thread {
        final int index;
        volatile boolean parked;

        Worker(int index) {
            super("vlm4j-cpu-" + index);
            this.index = index;
            setDaemon(true);
        }

        @Override
        public void run() {
            Job seen = null;
            while (true) {
                Job job = current;
                if (job == seen) {
                    job = await(seen);
                }
                seen = job;
                if (index < job.helpers) job.work();
            }
        }

        /** Spins, then parks, until a job other than {@code seen} is published. */
        private Job await(Job seen) {
            long start = System.nanoTime();
            Job job;
            while ((job = current) == seen) {
                if (System.nanoTime() - start < SPIN_NANOS) {
                    Thread.onSpinWait();
                    continue;
                }
                parked = true;
                if ((job = current) != seen) { // published between the check and the flag: seen by one of us
                    parked = false;
                    return job;
                }
                LockSupport.park(this);
                parked = false;
                start = System.nanoTime();
            }
            return job;
        }
    }

    /** Published between regions, so that a finished region's body (and what it holds) can be collected. */
    private static final Job IDLE = new Job((a, b) -> { }, 0, 0, 0);
    /** The job the workers run. */
    private static volatile Job current = IDLE;
    private static final ReentrantLock OWNER = new ReentrantLock();
    private static final Worker[] WORKERS = new Worker[PROCESSORS - 1];

    static {
        for (int i = 0; i < WORKERS.length; i++) (WORKERS[i] = new Worker(i)).start();
    }

    private Parallel() {}

    public static int threads() { return threads; }

    /** Sets the number of threads used by later calls (at most the number of processors). */
    public static void setThreads(int n) {
        threads = Math.max(1, Math.min(n, PROCESSORS));
    }

    /** Chunked range body: {@code body.run(from, to)} for disjoint ranges covering [0, n). */
    public interface Range { void run(int from, int to); }

    public static void forRange(int n, int minChunk, Range body) {
        forRange(n, minChunk, CHUNKS_PER_WORKER, body);
    }

    /** Whether the calling thread is running a region's body (a worker, or a caller inside its region). */
    static boolean inRegion() {
        return Thread.currentThread() instanceof Worker || OWNER.isHeldByCurrentThread();
    }

    /** As {@link #forRange(int, int, Range)} with {@code perWorker} chunks per thread. */
    public static void forRange(int n, int minChunk, int perWorker, Range body) {
        int t = threads;
        if (t == 1 || n <= minChunk || inRegion() || !OWNER.tryLock()) {
            body.run(0, n);
            return;
        }
        try {
            int chunks = Math.min(t * perWorker, (n + minChunk - 1) / minChunk);
            run(new Job(body, n, chunks, t - 1));
        } finally {
            OWNER.unlock();
        }
    }

    /**
     * As {@link #forRange(int, int, Range)}, with pieces of a shrinking size claimed in order from the front: each
     * {@code (items left) / (2 x threads)}, at least {@code minChunk}. The decode products use it: the first pieces
     * are long (few restarts of the weight streams and their prefetch), the last ones short, so that the threads
     * finish together instead of one waiting up to a whole chunk for the other; a thread slowed by another guest on
     * its core takes fewer pieces.
     */
    public static void forRangeGuided(int n, int minChunk, Range body) {
        int t = threads;
        if (t == 1 || n <= minChunk || inRegion() || !OWNER.tryLock()) {
            body.run(0, n);
            return;
        }
        try {
            run(new Job(body, n, Math.max(1, minChunk), t - 1, true));
        } finally {
            OWNER.unlock();
        }
    }

    /** Publishes a job to the workers, works on it, waits for its last piece and rethrows its first failure. */
    private static void run(Job job) {
        current = job;
        for (int i = 0; i < job.helpers; i++) if (WORKERS[i].parked) LockSupport.unpark(WORKERS[i]);
        job.work();
        while (job.pending.get() > 0) Thread.onSpinWait();
        current = IDLE;
        Throwable f = job.failure;
        if (f instanceof RuntimeException r) throw r;
        if (f instanceof Error e) throw e;
        if (f != null) throw new IllegalStateException(f);
    }

    /**
     * Scratch buffers above this many floats (64 MB) are not kept between calls ({@code -Dvlm4j.scratchKeepMb}): a
     * held buffer stays on the heap for the life of the thread, and the largest ones come from rare calls (the packed
     * activations of a 1036x1036 image's ViT MLP are 76 MB, which a 7B model run with {@code -Xmx768m} cannot spare).
     */
    static final long SCRATCH_KEEP_FLOATS = Long.getLong("vlm4j.scratchKeepMb", 64) << 18;

    /**
     * A float buffer of at least {@code size} held in {@code cache} for the calling thread and reused across calls;
     * a fresh one inside a region's body (the thread that started the region may hold its own cached buffer while it
     * runs chunks of the body) and above {@link #SCRATCH_KEEP_FLOATS}.
     */
    static float[] scratch(ThreadLocal<float[]> cache, int size) {
        if (inRegion() || size > SCRATCH_KEEP_FLOATS) return new float[size];
        float[] b = cache.get();
        if (b.length < size) cache.set(b = new float[size]);
        return b;
    }

    public static void forEach(int n, IntConsumer body) {
        forRange(n, 1, (a, b) -> { for (int i = a; i < b; i++) body.accept(i); });
    }
}
