package dev.vlm4j.compute.cpu;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertNotSame;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** The worker pool: every index exactly once, nesting inline, failures reach the caller, concurrent callers, idle workers park. */
class ParallelTest {
    private final int threads = Parallel.threads();

    @AfterEach
    void restoreThreads() { Parallel.setThreads(threads); }

    @ParameterizedTest
    @CsvSource({"0,1,4", "1,1,4", "7,1,4", "100,3,16", "1000,1,1", "12345,8,4", "64,64,4", "65,64,16"})
    void everyIndexRunsExactlyOnce(int n, int minChunk, int perWorker) {
        for (int rep = 0; rep < 50; rep++) {
            int[] hits = new int[n];
            Parallel.forRange(n, minChunk, perWorker, (a, b) -> {
                if (a < 0 || b > n || a >= b && n > 0) fail("bad range " + a + ".." + b + " of " + n);
                for (int i = a; i < b; i++) hits[i]++; // disjoint ranges: no two threads touch one index
            });
            int[] ones = new int[n];
            java.util.Arrays.fill(ones, 1);
            assertArrayEquals(ones, hits, "n=" + n + " minChunk=" + minChunk + " repetition " + rep);
        }
    }

    @ParameterizedTest
    @CsvSource({"0,1", "1,1", "7,1", "100,3", "1000,1", "12345,4", "64,64", "65,64", "5504,4"})
    void guidedPiecesCoverEveryIndexOnceAndShrink(int n, int minChunk) {
        for (int rep = 0; rep < 50; rep++) {
            int[] hits = new int[n];
            ConcurrentLinkedQueue<int[]> pieces = new ConcurrentLinkedQueue<>();
            Parallel.forRangeGuided(n, minChunk, (a, b) -> {
                if (a < 0 || b > n || a >= b && n > 0) fail("bad range " + a + ".." + b + " of " + n);
                pieces.add(new int[]{a, b});
                for (int i = a; i < b; i++) hits[i]++;
            });
            int[] ones = new int[n];
            java.util.Arrays.fill(ones, 1);
            assertArrayEquals(ones, hits, "n=" + n + " minChunk=" + minChunk + " repetition " + rep);
            if (threads == 1 || n <= minChunk) continue;
            // pieces are claimed in order from the front, each (left) / (2 x threads) long, at least minChunk
            int[][] sorted = pieces.stream().sorted(java.util.Comparator.comparingInt(p -> p[0])).toArray(int[][]::new);
            for (int[] p : sorted) {
                int want = Math.min(n - p[0], Math.max(minChunk, (n - p[0]) / (2 * threads)));
                assertEquals(want, p[1] - p[0], "piece at " + p[0] + " of " + n);
            }
        }
    }

    @Test
    void aFailingGuidedPieceReachesTheCallerAfterTheOthersFinish() {
        AtomicInteger done = new AtomicInteger();
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> Parallel.forRangeGuided(1000, 1, (a, b) -> {
            if (a == 0) throw new IllegalStateException("the first piece fails");
            done.addAndGet(b - a);
        }));
        assertEquals("the first piece fails", e.getMessage());
        int first = threads == 1 ? 1000 : 1000 / (2 * threads);
        assertEquals(1000 - first, done.get(), "the other pieces still ran");
    }

    @Test
    void regionsSpreadOverThreadsAndNestedRegionsRunInline() {
        ConcurrentLinkedQueue<Thread> seen = new ConcurrentLinkedQueue<>();
        AtomicInteger inner = new AtomicInteger();
        Parallel.forRange(64, 1, 16, (a, b) -> {
            seen.add(Thread.currentThread());
            Thread outer = Thread.currentThread();
            // a region inside a region runs whole on the thread that starts it
            Parallel.forRange(100, 1, (c, d) -> {
                assertSame(outer, Thread.currentThread(), "nested region left its thread");
                assertEquals(0, c);
                assertEquals(100, d);
                inner.addAndGet(d - c);
            });
            try { Thread.sleep(1); } catch (InterruptedException e) { throw new RuntimeException(e); }
        });
        int chunks = threads == 1 ? 1 : Math.min(threads * 16, 64);
        assertEquals(chunks * 100, inner.get(), "one whole nested region per chunk");
        assertEquals(chunks, seen.size());
        if (threads > 1) assertTrue(seen.stream().distinct().count() > 1, "one thread ran all " + chunks + " chunks");
        assertTrue(seen.contains(Thread.currentThread()), "the caller works on its own region");
    }

    @Test
    void aFailingChunkReachesTheCallerAfterTheOthersFinish() {
        AtomicInteger done = new AtomicInteger();
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> Parallel.forRange(40, 1, 4, (a, b) -> {
            if (a == 0) throw new IllegalArgumentException("chunk 0 fails");
            done.addAndGet(b - a);
        }));
        assertEquals("chunk 0 fails", e.getMessage());
        assertEquals(40 - 40 / Math.min(40, 4 * threads), done.get(), "the other chunks still ran");
        // the pool still works afterwards
        AtomicInteger sum = new AtomicInteger();
        Parallel.forRange(1000, 1, (a, b) -> sum.addAndGet(b - a));
        assertEquals(1000, sum.get());
    }

    @Test
    void concurrentCallersEachGetTheirWholeRange() throws Exception {
        int callers = 4, n = 5000;
        CountDownLatch start = new CountDownLatch(1);
        AtomicReference<Throwable> failure = new AtomicReference<>();
        List<Thread> ts = new ArrayList<>();
        for (int c = 0; c < callers; c++) {
            Thread t = new Thread(() -> {
                try {
                    start.await();
                    for (int rep = 0; rep < 200; rep++) {
                        long[] sum = new long[1];
                        Parallel.forRange(n, 1, (a, b) -> {
                            long s = 0;
                            for (int i = a; i < b; i++) s += i;
                            synchronized (sum) { sum[0] += s; }
                        });
                        assertEquals((long) n * (n - 1) / 2, sum[0]);
                    }
                } catch (Throwable e) {
                    failure.compareAndSet(null, e);
                }
            });
            ts.add(t);
            t.start();
        }
        start.countDown();
        for (Thread t : ts) t.join(60_000);
        assertNull(failure.get(), () -> "a concurrent caller failed: " + failure.get());
    }

    @Test
    void oneThreadRunsInline() {
        Parallel.setThreads(1);
        Thread me = Thread.currentThread();
        AtomicInteger calls = new AtomicInteger();
        Parallel.forRange(1000, 1, (a, b) -> {
            assertSame(me, Thread.currentThread());
            assertEquals(0, a);
            assertEquals(1000, b);
            calls.incrementAndGet();
        });
        assertEquals(1, calls.get());
    }

    @Test
    void idleWorkersStopSpinning() throws Exception {
        Parallel.forRange(100, 1, (a, b) -> { });
        java.lang.management.ThreadMXBean mx = java.lang.management.ManagementFactory.getThreadMXBean();
        Thread.sleep(Parallel.SPIN_NANOS / 1_000_000 + 200); // past the spin
        long before = workerCpu(mx);
        Thread.sleep(500);
        long used = workerCpu(mx) - before;
        assertTrue(used < 50_000_000L, "idle workers used " + used / 1e6 + " ms of CPU in 500 ms (they should be parked)");
    }

    private static long workerCpu(java.lang.management.ThreadMXBean mx) {
        long sum = 0;
        for (Thread t : Thread.getAllStackTraces().keySet())
            if (t.getName().startsWith("vlm4j-cpu-")) sum += Math.max(0, mx.getThreadCpuTime(t.threadId()));
        return sum;
    }

    @Test
    void scratchBuffersAreKeptUpToTheLimitAndFreshAboveIt() {
        ThreadLocal<float[]> cache = ThreadLocal.withInitial(() -> new float[0]);
        float[] a = Parallel.scratch(cache, 1000);
        assertTrue(a.length >= 1000);
        assertSame(a, Parallel.scratch(cache, 500), "a smaller request reuses the held buffer");
        int big = (int) Parallel.SCRATCH_KEEP_FLOATS + 1;
        float[] b = Parallel.scratch(cache, big), c = Parallel.scratch(cache, big);
        assertTrue(b.length >= big && c.length >= big);
        assertNotSame(b, c, "buffers above " + Parallel.SCRATCH_KEEP_FLOATS + " floats are not kept");
        assertSame(a, cache.get(), "nor do they replace the held one");
    }
}
