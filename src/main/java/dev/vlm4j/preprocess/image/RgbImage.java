package dev.vlm4j.preprocess.image;

/**
 * An 8-bit RGB image: {@code rgb} holds {@code width * height * 3} bytes, row-major, channels interleaved
 * (R, G, B). Bytes are unsigned sample values; read them with {@code b & 0xFF}.
 */
public record RgbImage(int width, int height, byte[] rgb) {
    public RgbImage {
        if (width <= 0 || height <= 0)
            throw new ImageException("image has zero size: " + width + "x" + height);
        if (rgb == null || rgb.length != (long) width * height * 3)
            throw new IllegalArgumentException("an RGB image of " + width + "x" + height + " needs "
                    + (long) width * height * 3 + " bytes, got " + (rgb == null ? "null" : rgb.length));
    }

    /** The unsigned value of channel {@code c} (0 R, 1 G, 2 B) at column {@code x}, row {@code y}. */
    public int get(int x, int y, int c) {
        return rgb[(y * width + x) * 3 + c] & 0xFF;
    }

    @Override
    public String toString() {
        return "RgbImage[" + width + "x" + height + "]";
    }
}
