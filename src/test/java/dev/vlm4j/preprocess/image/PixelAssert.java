package dev.vlm4j.preprocess.image;

import dev.vlm4j.tensor.Tensor;

import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Compares pixel values with the fixtures' tolerance (max abs diff 0.03, mean abs diff 0.002). */
public final class PixelAssert {
    public static final double MAX_ABS = 0.03, MEAN_ABS = 0.002;

    private PixelAssert() {}

    /** Asserts equal shapes and values within tolerance; returns {max, mean} abs diff. */
    public static double[] assertClose(String what, Tensor expected, Tensor actual) {
        assertArrayEquals(expected.shape(), actual.shape(), () -> what + ": shape differs: expected "
                + Arrays.toString(expected.shape()) + ", got " + Arrays.toString(actual.shape()));
        float[] e = expected.toFloatArray(), a = actual.toFloatArray();
        double max = 0, sum = 0;
        int at = -1;
        for (int i = 0; i < e.length; i++) {
            double d = Math.abs(e[i] - a[i]);
            sum += d;
            if (d > max) { max = d; at = i; }
        }
        double mean = e.length == 0 ? 0 : sum / e.length;
        long cols = expected.rank() > 1 ? expected.dim(-1) : 1;
        final double fmax = max, fmean = mean;
        final int fat = at;
        String where = at < 0 ? "" : " at row " + at / cols + " col " + at % cols + " (expected " + e[at] + ", got " + a[at] + ")";
        assertTrue(max <= MAX_ABS, () -> what + ": max abs diff " + fmax + " > " + MAX_ABS + where
                + "; mean abs diff " + fmean);
        assertTrue(mean <= MEAN_ABS, () -> what + ": mean abs diff " + fmean + " > " + MEAN_ABS + "; max " + fmax
                + (fat < 0 ? "" : where));
        return new double[]{max, mean};
    }
}
