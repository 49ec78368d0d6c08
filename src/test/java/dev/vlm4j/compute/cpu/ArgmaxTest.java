package dev.vlm4j.compute.cpu;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** The vectorized argmax follows the scalar rules exactly: lowest index on ties, NaN skipped, -inf and tails. */
class ArgmaxTest {
    @Test
    void vectorizedEqualsScalar() {
        Random rnd = new Random(11);
        for (int trial = 0; trial < 3000; trial++) {
            int n = 1 + rnd.nextInt(trial < 1500 ? 70 : 2000), offset = rnd.nextInt(5);
            float[] x = new float[offset + n + rnd.nextInt(3)];
            int levels = 1 + rnd.nextInt(6); // few distinct values: many ties
            for (int i = 0; i < x.length; i++) {
                int kind = rnd.nextInt(20);
                x[i] = kind == 0 ? Float.NaN : kind == 1 ? Float.NEGATIVE_INFINITY : kind == 2 ? -0f : rnd.nextInt(levels) - levels / 2;
            }
            if (trial % 7 == 0) java.util.Arrays.fill(x, offset, offset + n, trial % 14 == 0 ? Float.NaN : Float.NEGATIVE_INFINITY);
            if (trial % 11 == 0) x[offset + rnd.nextInt(n)] = Float.POSITIVE_INFINITY;
            assertEquals(Argmax.scalar(x, offset, n), Argmax.of(x, offset, n), "trial " + trial);
        }
        float[] big = new float[151_680];
        for (int i = 0; i < big.length; i++) big[i] = (float) rnd.nextGaussian();
        big[123_457] = 9f;
        big[140_000] = 9f;
        assertEquals(123_457, Argmax.of(big, 0, big.length));
        assertEquals(140_000 - 130_000, Argmax.of(big, 130_000, 21_680));
    }
}
