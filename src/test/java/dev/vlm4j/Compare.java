package dev.vlm4j;

import static org.junit.jupiter.api.Assertions.fail;

/** Numeric comparisons whose failure messages say what differs, where, and by how much. */
public final class Compare {
    private Compare() {}

    public static double maxAbsDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs((double) a[i] - b[i]));
        return m;
    }

    public static double meanAbsDiff(float[] a, float[] b) {
        double s = 0;
        for (int i = 0; i < a.length; i++) s += Math.abs((double) a[i] - b[i]);
        return a.length == 0 ? 0 : s / a.length;
    }

    /** Fails unless every |actual - expected| <= tol; the message gives the worst index and values. */
    public static void assertClose(String what, float[] expected, float[] actual, double tol) {
        if (expected.length != actual.length)
            fail(what + ": length " + actual.length + ", expected " + expected.length);
        int worst = -1;
        double m = -1;
        for (int i = 0; i < expected.length; i++) {
            double d = Math.abs((double) actual[i] - expected[i]);
            if (Double.isNaN(d)) { worst = i; m = Double.NaN; break; }
            if (d > m) { m = d; worst = i; }
        }
        if (Double.isNaN(m) || m > tol)
            fail(String.format("%s: max abs diff %.6g > %.3g at index %d (expected %.6f, got %.6f)", what, m, tol, worst,
                    expected[worst], actual[worst]));
    }

    public static void assertSameLongs(String what, long[] expected, long[] actual) {
        if (expected.length != actual.length)
            fail(what + ": length " + actual.length + ", expected " + expected.length
                    + "\n expected " + java.util.Arrays.toString(expected) + "\n actual   " + java.util.Arrays.toString(actual));
        for (int i = 0; i < expected.length; i++)
            if (expected[i] != actual[i])
                fail(what + ": first difference at index " + i + ": expected " + expected[i] + ", got " + actual[i]
                        + "\n expected " + java.util.Arrays.toString(expected) + "\n actual   " + java.util.Arrays.toString(actual));
    }
}
