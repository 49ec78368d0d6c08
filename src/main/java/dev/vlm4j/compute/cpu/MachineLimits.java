package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.nio.ByteOrder;

/** Measures this machine's limits with the kernels' own means: streaming read bandwidth and peak FMA throughput. */
public final class MachineLimits {
    private static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    private MachineLimits() {}

    /**
     * Best-of-{@code rounds} read bandwidth in bytes/s over an off-heap buffer of {@code bytes} (choose it well above
     * the last-level cache), read with vector loads by {@link Parallel#threads()} threads at once, each its own part:
     * each round is one pass of every way of reading of {@link BandwidthProbe#round()}.
     */
    public static double readBandwidth(long bytes, int rounds) {
        settle();
        try (BandwidthProbe probe = new BandwidthProbe(bytes)) {
            double best = 0;
            for (int r = 0; r < rounds; r++) best = Math.max(best, probe.round());
            return best;
        }
    }

    /**
     * A read-bandwidth probe that keeps its buffer, so that it can be measured again and again between other work
     * (the bench pairs every decode step with the rounds just before and after it: on a shared machine the bandwidth
     * drifts by a fifth within seconds). Close it to free the buffer.
     */
    public static final class BandwidthProbe implements AutoCloseable {
        private final Arena arena = Arena.ofShared();
        private final MemorySegment seg;
        private final long perPart;
        private final int threads = Parallel.threads();
        private final float[] sink = new float[threads];

        public BandwidthProbe(long bytes) {
            int vecBytes = F.length() * 4;
            long n = bytes / vecBytes * vecBytes;
            try {
                seg = arena.allocate(n, 64);
            } catch (OutOfMemoryError e) {
                arena.close();
                throw new IllegalStateException("cannot allocate " + bytes + " bytes for the bandwidth test", e);
            }
            seg.fill((byte) 1);
            perPart = n / threads / (4L * vecBytes) * (4L * vecBytes);
        }

        /** Bytes read per pass (all threads together). */
        public long bytesPerPass() { return perPart * threads; }

        /**
         * One pass of each way of reading, the best in bytes/s: the decode kernels' own (native, software prefetch into
         * L1, without and with their second one into L2) where they load, and a Vector API loop. A plain loop reads
         * below what those kernels reach, which would overstate their efficiency.
         */
        public double round() {
            double best = 0;
            if (NativeKernels.readSumAvailable() && !"false".equals(System.getProperty("vlm4j.peak.native")))
                for (long pf2 : new long[]{0, NativeKernels.prefetchL2(4096)}) {   // the kernels' distance for short rows
                    double s = together(threads, w -> sink[w] = NativeKernels.readSum(seg.address() + w * perPart, perPart, NativeKernels.PREFETCH, pf2));
                    best = Math.max(best, bytesPerPass() / s);
                }
            int vecBytes = F.length() * 4;
            double s = together(threads, w -> {
                FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                for (long o = w * perPart, end = o + perPart; o < end; o += 4L * vecBytes) {
                    s0 = s0.add(FloatVector.fromMemorySegment(F, seg, o, ByteOrder.LITTLE_ENDIAN));
                    s1 = s1.add(FloatVector.fromMemorySegment(F, seg, o + vecBytes, ByteOrder.LITTLE_ENDIAN));
                    s2 = s2.add(FloatVector.fromMemorySegment(F, seg, o + 2L * vecBytes, ByteOrder.LITTLE_ENDIAN));
                    s3 = s3.add(FloatVector.fromMemorySegment(F, seg, o + 3L * vecBytes, ByteOrder.LITTLE_ENDIAN));
                }
                sink[w] = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD);
            });
            return Math.max(best, bytesPerPass() / s);
        }

        @Override public void close() { arena.close(); }
    }

    /** Whether {@link #peakFlops} runs the native FMA loop ({@code -Dvlm4j.peak.native=false}: the Java one). */
    public static boolean nativePeak() {
        return NativeKernels.fmaPeakAvailable() && !"false".equals(System.getProperty("vlm4j.peak.native"));
    }

    /**
     * Waits (at most 10 s) until the JIT compiler has been idle for 300 ms: on a 2-core machine its threads take a
     * core from a probe right after a model loads or a new code path runs, and the probe then reads about half the peak.
     */
    static void settle() {
        java.lang.management.CompilationMXBean jit = java.lang.management.ManagementFactory.getCompilationMXBean();
        if (jit == null || !jit.isCompilationTimeMonitoringSupported()) return;
        long deadline = System.nanoTime() + 10_000_000_000L, last = jit.getTotalCompilationTime();
        int quiet = 0;
        while (quiet < 3 && System.nanoTime() < deadline) {
            try {
                Thread.sleep(100);
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                return;
            }
            long now = jit.getTotalCompilationTime();
            quiet = now == last ? quiet + 1 : 0;
            last = now;
        }
    }

    /**
     * Runs {@code body(w)} for w in [0, threads) on as many dedicated threads released together, and returns the
     * seconds from the first one's start to the last one's end, each read on its own thread. (The worker pool would
     * let one worker take two parts when the other wakes late, which measures one core and reads as a machine with
     * half the peak. A clock read on the releasing thread would start late whenever that thread gets its processor
     * back only after the others began: on two processors with three threads, a 64 MB pass then read as TB/s.)
     */
    static double together(int threads, java.util.function.IntConsumer body) {
        java.util.concurrent.CyclicBarrier start = new java.util.concurrent.CyclicBarrier(threads);
        long[] begin = new long[threads], end = new long[threads];
        Throwable[] failure = new Throwable[1];
        Thread[] th = new Thread[threads];
        for (int w = 0; w < threads; w++) {
            int ww = w;
            th[w] = new Thread(() -> {
                try {
                    start.await();
                    begin[ww] = System.nanoTime();
                    body.accept(ww);
                    end[ww] = System.nanoTime();
                } catch (Throwable e) {
                    failure[0] = e;
                }
            }, "vlm4j-limits-" + w);
            th[w].setDaemon(true);
            th[w].start();
        }
        try {
            for (Thread x : th) x.join();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("machine limit probe interrupted", e);
        }
        if (failure[0] != null) throw new IllegalStateException("machine limit probe failed", failure[0]);
        long first = Long.MAX_VALUE, last = Long.MIN_VALUE;
        for (int w = 0; w < threads; w++) {
            first = Math.min(first, begin[w]);
            last = Math.max(last, end[w]);
        }
        return (last - first) / 1e9;
    }

    /**
     * Peak float32 FLOP/s (an FMA counts 2) of a register-blocked loop of independent vector FMAs, best of
     * {@code passes}, on {@link Parallel#threads()} threads released together.
     */
    public static double peakFlops(long itersPerWorker, int passes) {
        int t = Parallel.threads();
        // Compile the loop as a normal method first (many short calls), not only as an on-stack replacement.
        float warm = 0;
        for (int i = 0; i < 20_000; i++) warm += fmaLoop(200, i);
        if (warm == 42) System.out.print("");
        settle();
        double best = 0;
        float[] sink = new float[t];
        // the same loop in C where the native kernels load (16 lanes): the Java one reads 10-20% lower on the same machine
        boolean c = nativePeak();
        for (int p = 0; p < passes; p++) {
            double s = together(t, w -> sink[w] = c ? NativeKernels.fmaPeak(itersPerWorker, w) : fmaLoop(itersPerWorker, w));
            best = Math.max(best, (double) t * itersPerWorker * 12 * (c ? 16 : F.length()) * 2 / s);
        }
        return best;
    }

    private static float fmaLoop(long iters, int seed) {
        FloatVector m = FloatVector.broadcast(F, 0.999999f), c = FloatVector.broadcast(F, 1e-7f);
        FloatVector a0 = FloatVector.broadcast(F, seed), a1 = a0.add(1), a2 = a0.add(2), a3 = a0.add(3), a4 = a0.add(4), a5 = a0.add(5);
        FloatVector a6 = a0.add(6), a7 = a0.add(7), a8 = a0.add(8), a9 = a0.add(9), a10 = a0.add(10), a11 = a0.add(11);
        for (long i = 0; i < iters; i++) {
            a0 = a0.fma(m, c); a1 = a1.fma(m, c); a2 = a2.fma(m, c); a3 = a3.fma(m, c);
            a4 = a4.fma(m, c); a5 = a5.fma(m, c); a6 = a6.fma(m, c); a7 = a7.fma(m, c);
            a8 = a8.fma(m, c); a9 = a9.fma(m, c); a10 = a10.fma(m, c); a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11).reduceLanes(VectorOperators.ADD);
    }

    public static int vectorBits() { return F.vectorBitSize(); }
}
