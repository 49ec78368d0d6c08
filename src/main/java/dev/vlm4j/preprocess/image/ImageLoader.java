package dev.vlm4j.preprocess.image;

import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.stream.ImageInputStream;
import java.awt.color.ColorSpace;
import java.awt.image.BufferedImage;
import java.awt.image.ColorModel;
import java.awt.image.IndexColorModel;
import java.awt.image.Raster;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.net.URI;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.Base64;
import java.util.Iterator;

/**
 * Decodes images to 8-bit RGB as transformers' {@code load_image} + {@code convert_to_rgb} do with Pillow:
 * PNG, JPEG, BMP, GIF (first frame) and WebP (TwelveMonkeys ImageIO plugins); the EXIF orientation is applied;
 * palette and grey images become RGB; images with alpha are composited onto white with Pillow's
 * {@code Image.alpha_composite} arithmetic. Sources: a file, a {@code file://} URI, a
 * {@code data:image/...;base64,} URI, or bytes. Errors are {@link ImageException}s naming the source.
 */
public final class ImageLoader {
    static {
        ImageIO.setUseCache(false);
        ImageIO.scanForPlugins();
    }

    private ImageLoader() {}

    /** Decodes the image file {@code file}. */
    public static RgbImage load(Path file) {
        byte[] bytes;
        try {
            bytes = Files.readAllBytes(file);
        } catch (NoSuchFileException e) {
            throw new ImageException("image file not found: " + file);
        } catch (IOException e) {
            throw new ImageException("cannot read image file " + file + ": " + e.getMessage(), e);
        }
        return decode(bytes, file.toString());
    }

    /**
     * Decodes the image named by {@code source}: a {@code data:} URI, a {@code file:} URI, or a file path.
     */
    public static RgbImage load(String source) {
        if (source == null || source.isBlank()) throw new ImageException("empty image source");
        String s = source.strip();
        String lower = s.length() > 8 ? s.substring(0, 8).toLowerCase() : s.toLowerCase();
        if (lower.startsWith("data:")) return decode(dataUriBytes(s), describe(s));
        if (lower.startsWith("file:")) {
            try {
                return load(Path.of(URI.create(s)));
            } catch (IllegalArgumentException e) {
                throw new ImageException("invalid file URI " + describe(s) + ": " + e.getMessage(), e);
            }
        }
        if (lower.startsWith("http://") || lower.startsWith("https://"))
            throw new ImageException("remote image URLs are not supported (download the file first): " + describe(s));
        return load(Path.of(s));
    }

    /** Decodes the image {@code uri} ({@code data:} or {@code file:}). */
    public static RgbImage load(URI uri) {
        return load(uri.toString());
    }

    /** Decodes encoded image bytes; {@code sourceName} names them in error messages. */
    public static RgbImage decode(byte[] bytes, String sourceName) {
        if (bytes == null || bytes.length == 0) throw new ImageException("image " + sourceName + " is empty (0 bytes)");
        BufferedImage bi;
        try (ImageInputStream in = ImageIO.createImageInputStream(new ByteArrayInputStream(bytes))) {
            Iterator<ImageReader> readers = ImageIO.getImageReaders(in);
            if (!readers.hasNext())
                throw new ImageException("cannot decode image " + sourceName
                        + ": not a recognised image format (PNG, JPEG, BMP, GIF or WebP)");
            ImageReader reader = readers.next();
            try {
                reader.setInput(in, true, true);
                int w = reader.getWidth(0), h = reader.getHeight(0);
                if (w <= 0 || h <= 0) throw new ImageException("image " + sourceName + " has zero size: " + w + "x" + h);
                bi = reader.read(0);
            } finally {
                reader.dispose();
            }
        } catch (ImageException e) {
            throw e;
        } catch (IOException | RuntimeException e) {
            throw new ImageException("cannot decode image " + sourceName + ": "
                    + (e.getMessage() == null ? e.toString() : e.getMessage()), e);
        }
        if (bi == null) throw new ImageException("cannot decode image " + sourceName);
        if (bi.getWidth() <= 0 || bi.getHeight() <= 0)
            throw new ImageException("image " + sourceName + " has zero size: " + bi.getWidth() + "x" + bi.getHeight());
        RgbImage rgb = toRgb(bi);
        return ExifOrientation.apply(rgb, ExifOrientation.read(bytes));
    }

    /** Converts a decoded image to RGB, compositing any alpha onto white. */
    public static RgbImage toRgb(BufferedImage bi) {
        int w = bi.getWidth(), h = bi.getHeight();
        byte[] out = new byte[Math.multiplyExact(Math.multiplyExact(w, h), 3)];
        ColorModel cm = bi.getColorModel();
        Raster r = bi.getRaster();
        int csType = cm.getColorSpace().getType();
        boolean raw = !(cm instanceof IndexColorModel) && !cm.isAlphaPremultiplied()
                && (cm.getColorSpace().isCS_sRGB() || csType == ColorSpace.TYPE_GRAY)
                && r.getNumBands() == cm.getNumComponents();
        if (raw) {
            // Read samples directly: no colour-space conversion (Java's grey-to-sRGB path changes values).
            int bands = r.getNumBands();
            boolean grey = csType == ColorSpace.TYPE_GRAY;
            boolean alpha = cm.hasAlpha();
            int[] bits = cm.getComponentSize();
            int[] px = new int[w * bands];
            for (int y = 0; y < h; y++) {
                r.getPixels(0, y, w, 1, px);
                for (int x = 0; x < w; x++) {
                    int o = (y * w + x) * 3, i = x * bands;
                    int cR, cG, cB, a = 255;
                    if (grey) {
                        cR = cG = cB = to8(px[i], bits[0]);
                        if (alpha) a = to8(px[i + 1], bits[1]);
                    } else {
                        cR = to8(px[i], bits[0]);
                        cG = to8(px[i + 1], bits[1]);
                        cB = to8(px[i + 2], bits[2]);
                        if (alpha) a = to8(px[i + 3], bits[3]);
                    }
                    put(out, o, cR, cG, cB, a);
                }
            }
        } else {
            int[] row = new int[w];
            for (int y = 0; y < h; y++) {
                bi.getRGB(0, y, w, 1, row, 0, w);
                for (int x = 0; x < w; x++) {
                    int argb = row[x];
                    put(out, (y * w + x) * 3, (argb >> 16) & 0xFF, (argb >> 8) & 0xFF, argb & 0xFF, argb >>> 24);
                }
            }
        }
        return new RgbImage(w, h, out);
    }

    private static void put(byte[] out, int o, int r, int g, int b, int a) {
        if (a == 255) {
            out[o] = (byte) r;
            out[o + 1] = (byte) g;
            out[o + 2] = (byte) b;
        } else {
            out[o] = (byte) compositeOnWhite(r, a);
            out[o + 1] = (byte) compositeOnWhite(g, a);
            out[o + 2] = (byte) compositeOnWhite(b, a);
        }
    }

    /**
     * One channel of Pillow's {@code Image.alpha_composite(white, rgba)} (libImaging/AlphaComposite.c, 7-bit
     * fixed point), which transformers' {@code convert_to_rgb} uses.
     */
    public static int compositeOnWhite(int value, int alpha) {
        if (alpha == 0) return 255;
        final int precisionBits = 7;
        int outa255 = alpha * 255 + 255 * (255 - alpha);
        int coef1 = alpha * 255 * 255 * (1 << precisionBits) / outa255;
        int coef2 = 255 * (1 << precisionBits) - coef1;
        int tmp = value * coef1 + 255 * coef2 + (0x80 << precisionBits);
        return ((((tmp >> 8) + tmp) >> 8) >> precisionBits);
    }

    private static int to8(int v, int bits) {
        if (bits == 8) return v;
        if (bits > 8) return v >>> (bits - 8);
        int max = (1 << bits) - 1;
        return (v * 255 + max / 2) / max;
    }

    private static byte[] dataUriBytes(String uri) {
        int comma = uri.indexOf(',');
        if (comma < 0) throw new ImageException("malformed data URI (no comma): " + describe(uri));
        String meta = uri.substring(5, comma).toLowerCase();
        String payload = uri.substring(comma + 1);
        try {
            if (meta.endsWith(";base64"))
                return Base64.getMimeDecoder().decode(payload.replace('-', '+').replace('_', '/'));
            return URLDecoder.decode(payload, StandardCharsets.ISO_8859_1).getBytes(StandardCharsets.ISO_8859_1);
        } catch (IllegalArgumentException e) {
            throw new ImageException("malformed data URI " + describe(uri) + ": " + e.getMessage(), e);
        }
    }

    /** A source string shortened for messages (data URIs can be megabytes). */
    private static String describe(String s) {
        return s.length() <= 60 ? s : s.substring(0, 40) + "...(" + s.length() + " chars)";
    }
}
