package dev.vlm4j.model;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/** The rotary tables, cached rows of text positions included, equal the formula computed afresh, bit for bit. */
class MRopeTest {
    private static float[][] reference(int headDim, double theta, int[] section, long[][] pos, int from, int n) {
        int half = headDim / 2;
        float[] cos = new float[n * headDim], sin = new float[n * headDim];
        for (int i = 0; i < n; i++)
            for (int j = 0; j < half; j++) {
                int stream = j < section[0] ? 0 : j < section[0] + section[1] ? 1 : 2;
                float inv = (float) (1.0 / Math.pow(theta, (float) (2 * j) / headDim));
                float angle = (float) pos[stream][from + i] * inv;
                cos[i * headDim + j] = cos[i * headDim + j + half] = (float) Math.cos(angle);
                sin[i * headDim + j] = sin[i * headDim + j + half] = (float) Math.sin(angle);
            }
        return new float[][]{cos, sin};
    }

    @Test
    void cachedTextRowsEqualTheFormula() {
        int d = 128;
        int[] section = {16, 24, 24};
        MRope rope = new MRope(d, 1_000_000, section);
        int n = 300;
        long[][] pos = new long[3][n];
        for (int i = 0; i < n; i++) {   // text, then a 10 x 10 image grid, then text again; one position past the cache
            boolean image = i >= 100 && i < 200;
            pos[0][i] = image ? 100 : i;
            pos[1][i] = image ? 100 + (i - 100) / 10 : i;
            pos[2][i] = image ? 100 + (i - 100) % 10 : i;
        }
        pos[0][299] = pos[1][299] = pos[2][299] = 70_000;
        for (int round = 0; round < 2; round++)   // the second round reads the cached rows
            for (int from : new int[]{0, 37}) {
                float[][] got = rope.tables(pos, from, n - from), want = reference(d, 1_000_000, section, pos, from, n - from);
                assertArrayEquals(want[0], got[0], "cos, round " + round + ", from " + from);
                assertArrayEquals(want[1], got[1], "sin, round " + round + ", from " + from);
            }
    }
}
