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
     * Best-of-{@code passes} read bandwidth in bytes/s over an off-heap buffer of {@code bytes} (choose it well above
     * the last-level cache), read with vector loads by all {@link Parallel} workers.
     */
    public static double readBandwidth(long bytes, int passes) {
        int lanes = F.length(), vecBytes = lanes * 4;
        long n = bytes / vecBytes * vecBytes;
        try (Arena arena = Arena.ofShared()) {
            MemorySegment seg = arena.allocate(n, 64);
            seg.fill((byte) 1);
            MemorySegment shared = seg; // read-only use by the workers
            int parts = Parallel.threads() * 8;
            long perPart = n / parts / vecBytes * vecBytes;
            double best = 0;
            float[] sink = new float[parts];
            for (int p = 0; p < passes; p++) {
                long t0 = System.nanoTime();
                Parallel.forRange(parts, 1, (a, b) -> {
                    for (int part = a; part < b; part++) {
                        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
                        long o = part * perPart, end = o + perPart;
                        for (; o + 4L * vecBytes <= end; o += 4L * vecBytes) {
                            s0 = s0.add(FloatVector.fromMemorySegment(F, shared, o, ByteOrder.LITTLE_ENDIAN));
                            s1 = s1.add(FloatVector.fromMemorySegment(F, shared, o + vecBytes, ByteOrder.LITTLE_ENDIAN));
                            s2 = s2.add(FloatVector.fromMemorySegment(F, shared, o + 2L * vecBytes, ByteOrder.LITTLE_ENDIAN));
                            s3 = s3.add(FloatVector.fromMemorySegment(F, shared, o + 3L * vecBytes, ByteOrder.LITTLE_ENDIAN));
                        }
                        sink[part] = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD);
                    }
                });
                double s = (System.nanoTime() - t0) / 1e9;
                best = Math.max(best, perPart * parts / s);
            }
            return best;
        } catch (OutOfMemoryError e) {
            throw new IllegalStateException("cannot allocate " + bytes + " bytes for the bandwidth test", e);
        }
    }

    /** Peak float32 FLOP/s (an FMA counts 2) of a register-blocked loop of independent vector FMAs on all workers. */
    public static double peakFlops(long itersPerWorker, int passes) {
        int t = Parallel.threads();
        // Compile the loop as a normal method first (many short calls), not only as an on-stack replacement.
        float warm = 0;
        for (int i = 0; i < 20_000; i++) warm += fmaLoop(200, i);
        if (warm == 42) System.out.print("");
        double best = 0;
        float[] sink = new float[t];
        for (int p = 0; p < passes; p++) {
            long t0 = System.nanoTime();
            Parallel.forRange(t, 1, (a, b) -> {
                for (int w = a; w < b; w++) sink[w] = fmaLoop(itersPerWorker, w);
            });
            double s = (System.nanoTime() - t0) / 1e9;
            best = Math.max(best, (double) t * itersPerWorker * 12 * F.length() * 2 / s);
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
