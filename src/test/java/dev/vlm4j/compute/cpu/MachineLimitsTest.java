package dev.vlm4j.compute.cpu;

import org.junit.jupiter.api.Test;

import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/** The machine probes' timing and bookkeeping (their speed is the benchmark's business, not a test's). */
class MachineLimitsTest {
    /**
     * A pass lasts at least as long as its slowest thread's body: the clock is read on the probe threads themselves,
     * so a releasing thread that gets its processor back late cannot shorten the pass (it once read 64 MB at TB/s).
     */
    @Test
    void aPassIsNeverShorterThanItsSlowestBody() {
        for (int round = 0; round < 5; round++) {
            long[] took = new long[3];
            AtomicInteger ran = new AtomicInteger();
            double s = MachineLimits.together(3, w -> {
                long t0 = System.nanoTime(), until = t0 + (w + 1) * 4_000_000L;
                while (System.nanoTime() < until) Thread.onSpinWait();
                took[w] = System.nanoTime() - t0;
                ran.incrementAndGet();
            });
            assertEquals(3, ran.get(), "every part ran once");
            long slowest = Math.max(took[0], Math.max(took[1], took[2]));
            assertTrue(s * 1e9 >= slowest, "pass " + s * 1e3 + " ms shorter than its slowest body " + slowest / 1e6 + " ms");
        }
    }

    @Test
    void aFailingBodyFailsThePass() {
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> MachineLimits.together(2, w -> {
            if (w == 1) throw new IllegalArgumentException("part 1 broke");
        }));
        assertEquals("part 1 broke", e.getCause().getMessage());
    }

    /** A probe keeps its buffer across rounds, reads the whole of it per pass and gives a finite positive rate. */
    @Test
    void aProbeMeasuresRoundAfterRound() {
        try (MachineLimits.BandwidthProbe p = new MachineLimits.BandwidthProbe(8L << 20)) {
            assertTrue(p.bytesPerPass() > (8L << 20) - 4096L * Parallel.threads() && p.bytesPerPass() <= 8L << 20,
                    "bytes per pass " + p.bytesPerPass());
            for (int r = 0; r < 3; r++) {
                double b = p.round();
                assertTrue(b > 0 && Double.isFinite(b), "round " + r + ": " + b);
            }
        }
    }
}
