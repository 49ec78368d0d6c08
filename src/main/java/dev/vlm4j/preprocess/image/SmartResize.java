package dev.vlm4j.preprocess.image;

/**
 * The target size of Qwen2-VL's {@code smart_resize}: both sides multiples of {@code factor}, the pixel count
 * within {@code [minPixels, maxPixels]} and the aspect ratio kept as closely as possible. Mirrors
 * transformers / qwen-vl-utils bit for bit (Python's round-half-to-even, {@code beta} in double).
 */
public final class SmartResize {
    /** The largest aspect ratio accepted (as transformers). */
    public static final double MAX_ASPECT_RATIO = 200;

    /** A target size in pixels. */
    public record Size(int height, int width) {}

    private SmartResize() {}

    /** {@link #resize(int, int, int, double, double)} with integer pixel budgets. */
    public static Size resize(int height, int width, int factor, long minPixels, long maxPixels) {
        return resize(height, width, factor, (double) minPixels, (double) maxPixels);
    }

    /**
     * The resized (height, width).
     *
     * @throws ImageException when a side is not positive or the aspect ratio exceeds {@value #MAX_ASPECT_RATIO}
     */
    public static Size resize(int height, int width, int factor, double minPixels, double maxPixels) {
        if (height <= 0 || width <= 0)
            throw new ImageException("image has zero size: " + width + "x" + height);
        if (factor <= 0) throw new IllegalArgumentException("factor must be positive, got " + factor);
        if (minPixels > maxPixels)
            throw new ImageException("min_pixels " + fmt(minPixels) + " exceeds max_pixels " + fmt(maxPixels));
        double ratio = (double) Math.max(height, width) / Math.min(height, width);
        if (ratio > MAX_ASPECT_RATIO)
            throw new ImageException("absolute aspect ratio must be smaller than " + (int) MAX_ASPECT_RATIO
                    + ", got " + String.format("%.2f", ratio) + " (" + width + "x" + height + ")");
        long hBar = Math.max(factor, (long) Math.rint((double) height / factor) * factor);
        long wBar = Math.max(factor, (long) Math.rint((double) width / factor) * factor);
        if ((double) (hBar * wBar) > maxPixels) {
            double beta = Math.sqrt(((double) height * width) / maxPixels);
            hBar = Math.max(factor, (long) Math.floor(height / beta / factor) * factor);
            wBar = Math.max(factor, (long) Math.floor(width / beta / factor) * factor);
        } else if ((double) (hBar * wBar) < minPixels) {
            double beta = Math.sqrt(minPixels / ((double) height * width));
            hBar = (long) Math.ceil(height * beta / factor) * factor;
            wBar = (long) Math.ceil(width * beta / factor) * factor;
        }
        if (hBar > Integer.MAX_VALUE || wBar > Integer.MAX_VALUE)
            throw new ImageException("resized image too large: " + wBar + "x" + hBar);
        return new Size((int) hBar, (int) wBar);
    }

    private static String fmt(double v) {
        return v == Math.rint(v) ? Long.toString((long) v) : Double.toString(v);
    }
}
