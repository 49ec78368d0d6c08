package dev.vlm4j.preprocess.image;

/**
 * Antialiased bicubic resizing of 8-bit RGB images, bit-exact with either reference implementation:
 * <ul>
 * <li>{@link Mode#TORCHVISION} (default): torchvision's {@code resize(antialias=True)} on uint8 tensors
 * (ATen's Pillow-SIMD-derived uint8 kernel), which transformers 5's Qwen2-VL processors use; the fixtures match
 * it bit for bit;</li>
 * <li>{@link Mode#PILLOW}: Pillow's {@code Image.resize(size, Image.BICUBIC)} (libImaging/Resample.c).</li>
 * </ul>
 * Both use a cubic convolution kernel with {@code a = -0.5} whose support widens with the shrink factor,
 * coefficients normalised per output pixel and converted to fixed point, a horizontal pass into an 8-bit
 * intermediate image, then a vertical pass, each rounding and clamping to 0..255. They differ only in the
 * fixed-point precision: Pillow uses 22 fractional bits; torchvision fits the largest weight of each axis
 * into int16, so results differ by at most one level in a few pixels.
 */
public final class BicubicResampler {
    private static final int PRECISION_BITS = 32 - 8 - 2;
    private static final double SUPPORT = 2.0;

    /** Which implementation's fixed-point arithmetic to reproduce. */
    public enum Mode { TORCHVISION, PILLOW }

    private BicubicResampler() {}

    /** The bicubic filter, {@code a = -0.5}, written as Pillow or ATen evaluate it. */
    static double bicubic(double x, Mode mode) {
        final double a = -0.5;
        if (x < 0.0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return mode == Mode.PILLOW ? (((x - 5) * x + 8) * x - 4) * a
                : ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
        return 0.0;
    }

    /** Per-output-pixel source windows and fixed-point weights along one axis. */
    record Coefficients(int ksize, int[] bounds, int[] weights, int precision) {
        int min(int out) { return bounds[2 * out]; }
        int count(int out) { return bounds[2 * out + 1]; }
    }

    /**
     * Pillow's {@code precompute_coeffs} (equivalently ATen's {@code _compute_index_ranges_weights}) followed by
     * the conversion to fixed point of {@code mode}.
     */
    static Coefficients coefficients(int inSize, int outSize, Mode mode) {
        double in0 = 0, in1 = inSize;
        double scale = (in1 - in0) / outSize;
        double filterscale = Math.max(scale, 1.0);
        double support = SUPPORT * filterscale;
        int ksize = (int) Math.ceil(support) * 2 + 1;
        int[] bounds = new int[outSize * 2];
        int[] kk = new int[outSize * ksize];
        double[] k = new double[ksize];
        double[] all = new double[outSize * ksize];
        double wtMax = 0;
        for (int xx = 0; xx < outSize; xx++) {
            double center = in0 + (xx + 0.5) * scale;
            double ww = 0.0;
            double ss = 1.0 / filterscale;
            int xmin = (int) (center - support + 0.5);
            if (xmin < 0) xmin = 0;
            int xmax = (int) (center + support + 0.5);
            if (xmax > inSize) xmax = inSize;
            xmax -= xmin;
            if (mode == Mode.TORCHVISION) xmax = Math.max(0, Math.min(xmax, ksize));
            for (int x = 0; x < xmax; x++) {
                double w = bicubic((x + xmin - center + 0.5) * ss, mode);
                k[x] = w;
                ww += w;
            }
            for (int x = 0; x < xmax; x++) {
                double v = ww != 0.0 ? k[x] / ww : k[x];
                all[xx * ksize + x] = v;
                wtMax = Math.max(wtMax, v);
            }
            bounds[xx * 2] = xmin;
            bounds[xx * 2 + 1] = xmax;
        }
        int precision = PRECISION_BITS;
        if (mode == Mode.TORCHVISION) { // ATen's _compute_index_ranges_int16_weights
            for (precision = 0; precision < 22; precision++)
                if ((int) (0.5 + wtMax * (1 << (precision + 1))) >= (1 << 15)) break;
        }
        for (int i = 0; i < all.length; i++) {
            double v = all[i];
            kk[i] = v < 0 ? (int) (-0.5 + v * (1 << precision)) : (int) (0.5 + v * (1 << precision));
        }
        return new Coefficients(ksize, bounds, kk, precision);
    }

    private static int clip8(int in, int precision) {
        if (in >= (1 << precision << 8)) return 255;
        if (in <= 0) return 0;
        return in >> precision;
    }

    /** {@link #resize(RgbImage, int, int, Mode)} with {@link Mode#TORCHVISION}. */
    public static RgbImage resize(RgbImage in, int outWidth, int outHeight) {
        return resize(in, outWidth, outHeight, Mode.TORCHVISION);
    }

    /** The image resized to {@code outWidth x outHeight}; the same image when the size is unchanged. */
    public static RgbImage resize(RgbImage in, int outWidth, int outHeight, Mode mode) {
        if (outWidth <= 0 || outHeight <= 0)
            throw new ImageException("cannot resize to " + outWidth + "x" + outHeight);
        boolean horizontal = outWidth != in.width();
        boolean vertical = outHeight != in.height();
        if (!horizontal && !vertical) return in;
        Coefficients vert = coefficients(in.height(), outHeight, mode);
        byte[] src = in.rgb();
        int width = in.width();
        int rowFirst = 0, rows = in.height();
        if (horizontal) {
            Coefficients hor = coefficients(in.width(), outWidth, mode);
            if (vertical) {
                rowFirst = vert.min(0);
                int rowLast = vert.min(outHeight - 1) + vert.count(outHeight - 1);
                rows = rowLast - rowFirst;
            }
            src = horizontalPass(src, in.width(), rowFirst, rows, outWidth, hor);
            width = outWidth;
        }
        if (!vertical) return new RgbImage(width, rows, src);
        return new RgbImage(width, outHeight, verticalPass(src, width, rowFirst, outHeight, vert));
    }

    private static byte[] horizontalPass(byte[] src, int inWidth, int rowFirst, int rows, int outWidth,
                                         Coefficients c) {
        byte[] out = new byte[rows * outWidth * 3];
        int[] kk = c.weights();
        int ksize = c.ksize();
        int half = 1 << (c.precision() - 1), prec = c.precision();
        for (int y = 0; y < rows; y++) {
            int inRow = (y + rowFirst) * inWidth * 3;
            int outRow = y * outWidth * 3;
            for (int xx = 0; xx < outWidth; xx++) {
                int xmin = c.min(xx), xmax = c.count(xx), kOff = xx * ksize;
                int s0 = half, s1 = half, s2 = half;
                int p = inRow + xmin * 3;
                for (int x = 0; x < xmax; x++, p += 3) {
                    int w = kk[kOff + x];
                    s0 += (src[p] & 0xFF) * w;
                    s1 += (src[p + 1] & 0xFF) * w;
                    s2 += (src[p + 2] & 0xFF) * w;
                }
                int o = outRow + xx * 3;
                out[o] = (byte) clip8(s0, prec);
                out[o + 1] = (byte) clip8(s1, prec);
                out[o + 2] = (byte) clip8(s2, prec);
            }
        }
        return out;
    }

    /** Vertical pass; the source's first row is image row {@code rowFirst}. */
    private static byte[] verticalPass(byte[] src, int width, int rowFirst, int outHeight, Coefficients c) {
        int stride = width * 3;
        byte[] out = new byte[outHeight * stride];
        int[] kk = c.weights();
        int ksize = c.ksize();
        int half = 1 << (c.precision() - 1), prec = c.precision();
        int[] acc = new int[stride];
        for (int yy = 0; yy < outHeight; yy++) {
            int ymin = c.min(yy) - rowFirst, ymax = c.count(yy), kOff = yy * ksize;
            java.util.Arrays.fill(acc, half);
            for (int y = 0; y < ymax; y++) {
                int w = kk[kOff + y];
                int row = (ymin + y) * stride;
                for (int i = 0; i < stride; i++) acc[i] += (src[row + i] & 0xFF) * w;
            }
            int o = yy * stride;
            for (int i = 0; i < stride; i++) out[o + i] = (byte) clip8(acc[i], prec);
        }
        return out;
    }
}
