package dev.vlm4j.preprocess.image;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import javax.imageio.IIOImage;
import javax.imageio.ImageIO;
import javax.imageio.ImageWriter;
import javax.imageio.stream.ImageOutputStream;
import java.awt.image.BufferedImage;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Base64;

import static org.junit.jupiter.api.Assertions.*;

class ImageLoaderTest {

    private static byte[] encode(BufferedImage img, String format) throws IOException {
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        assertTrue(ImageIO.write(img, format, out), "no ImageIO writer for " + format);
        return out.toByteArray();
    }

    private static BufferedImage twoColours(int w, int h, int left, int right) {
        BufferedImage img = new BufferedImage(w, h, BufferedImage.TYPE_INT_RGB);
        for (int y = 0; y < h; y++) for (int x = 0; x < w; x++) img.setRGB(x, y, x < w / 2 ? left : right);
        return img;
    }

    private static void assertPixel(RgbImage img, int x, int y, int r, int g, int b, int tol, String what) {
        int[] got = {img.get(x, y, 0), img.get(x, y, 1), img.get(x, y, 2)};
        for (int c = 0; c < 3; c++) {
            int want = new int[]{r, g, b}[c];
            assertTrue(Math.abs(got[c] - want) <= tol, what + ": pixel (" + x + "," + y + ") is " + Arrays.toString(got)
                    + ", expected [" + r + ", " + g + ", " + b + "] within " + tol);
        }
    }

    @Test
    void pngFromFileUriAndDataUri(@TempDir Path tmp) throws IOException {
        BufferedImage src = twoColours(6, 4, 0xFF0000, 0x0080FF);
        byte[] png = encode(src, "png");
        Path file = tmp.resolve("a.png");
        Files.write(file, png);
        RgbImage a = ImageLoader.load(file);
        RgbImage b = ImageLoader.load(file.toUri().toString());
        RgbImage c = ImageLoader.load("data:image/png;base64," + Base64.getEncoder().encodeToString(png));
        RgbImage d = ImageLoader.decode(png, "bytes");
        assertEquals(6, a.width());
        assertEquals(4, a.height());
        assertPixel(a, 0, 0, 255, 0, 0, 0, "png left");
        assertPixel(a, 5, 3, 0, 128, 255, 0, "png right");
        assertArrayEquals(a.rgb(), b.rgb(), "file:// URI decodes like the path");
        assertArrayEquals(a.rgb(), c.rgb(), "data: URI decodes like the file");
        assertArrayEquals(a.rgb(), d.rgb(), "bytes decode like the file");
    }

    @Test
    void rgbaIsCompositedOntoWhite() throws IOException {
        BufferedImage img = new BufferedImage(3, 1, BufferedImage.TYPE_INT_ARGB);
        img.setRGB(0, 0, (128 << 24) | (200 << 16) | (100 << 8));
        img.setRGB(1, 0, 0x00123456); // fully transparent
        img.setRGB(2, 0, 0xFF0A141E); // opaque
        RgbImage out = ImageLoader.decode(encode(img, "png"), "rgba.png");
        // Pillow alpha_composite(white, rgba): 200 @ alpha 128 -> 227, 100 -> 177, 0 -> 127
        assertPixel(out, 0, 0, 227, 177, 127, 0, "half-transparent");
        assertPixel(out, 1, 0, 255, 255, 255, 0, "transparent");
        assertPixel(out, 2, 0, 10, 20, 30, 0, "opaque");
        // The fixed-point arithmetic agrees with exact rounding to within one step for every value and alpha.
        for (int a = 0; a < 256; a++)
            for (int v = 0; v < 256; v++) {
                int exact = (int) Math.round((v * a + 255.0 * (255 - a)) / 255.0);
                int got = ImageLoader.compositeOnWhite(v, a);
                assertTrue(Math.abs(got - exact) <= 1, "value " + v + " alpha " + a + ": " + got + " vs " + exact);
            }
    }

    @Test
    void greyPngKeepsItsValues() throws IOException {
        BufferedImage img = new BufferedImage(16, 16, BufferedImage.TYPE_BYTE_GRAY);
        for (int i = 0; i < 256; i++) img.getRaster().setSample(i % 16, i / 16, 0, i);
        RgbImage out = ImageLoader.decode(encode(img, "png"), "grey.png");
        for (int i = 0; i < 256; i++) assertPixel(out, i % 16, i / 16, i, i, i, 0, "grey " + i);
    }

    @Test
    void bmpDecodes() throws IOException {
        RgbImage out = ImageLoader.decode(encode(twoColours(4, 2, 0x102030, 0xF0E0D0), "bmp"), "x.bmp");
        assertPixel(out, 0, 1, 0x10, 0x20, 0x30, 0, "bmp left");
        assertPixel(out, 3, 0, 0xF0, 0xE0, 0xD0, 0, "bmp right");
    }

    @Test
    void gifUsesFirstFrame() throws IOException {
        ImageWriter w = ImageIO.getImageWritersByFormatName("gif").next();
        ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ImageOutputStream out = ImageIO.createImageOutputStream(bytes)) {
            w.setOutput(out);
            w.prepareWriteSequence(null);
            w.writeToSequence(new IIOImage(twoColours(8, 8, 0xFF0000, 0xFF0000), null, null), null);
            w.writeToSequence(new IIOImage(twoColours(8, 8, 0x0000FF, 0x0000FF), null, null), null);
            w.endWriteSequence();
        } finally {
            w.dispose();
        }
        RgbImage out = ImageLoader.decode(bytes.toByteArray(), "anim.gif");
        assertEquals(8, out.width());
        assertPixel(out, 4, 4, 255, 0, 0, 0, "first GIF frame (palette to RGB)");
    }

    @Test
    void webpDecodes() {
        // 1x1 lossless and lossy-with-alpha WebP images (the well-known feature-detection samples).
        RgbImage lossless = ImageLoader.load("data:image/webp;base64,UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==");
        assertEquals(1, lossless.width());
        assertEquals(1, lossless.height());
        RgbImage alpha = ImageLoader.load("data:image/webp;base64,UklGRkoAAABXRUJQVlA4WAoAAAAQAAAAAAAAAAAAQUxQSAwAAAAR"
                + "BxAR/Q9ERP8DAABWUDggGAAAABQBAJ0BKgEAAQAAAP4AAA3AAP7mtQAAAA==");
        assertEquals(1, alpha.width());
        assertEquals(1, alpha.height());
    }

    /** A JPEG with an APP1 Exif segment holding only the orientation tag, inserted after APP0. */
    private static byte[] jpegWithOrientation(BufferedImage img, int orientation) throws IOException {
        byte[] jpg = encode(img, "jpg");
        byte[] tiff = {'M', 'M', 0, 42, 0, 0, 0, 8, 0, 1, 0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, (byte) orientation, 0, 0,
                0, 0, 0, 0};
        int len = 2 + 6 + tiff.length;
        ByteArrayOutputStream app1 = new ByteArrayOutputStream();
        app1.write(0xFF);
        app1.write(0xE1);
        app1.write(len >> 8);
        app1.write(len & 0xFF);
        app1.writeBytes("Exif\0\0".getBytes(java.nio.charset.StandardCharsets.ISO_8859_1));
        app1.writeBytes(tiff);
        int insertAt = 2;
        if ((jpg[2] & 0xFF) == 0xFF && (jpg[3] & 0xFF) == 0xE0) insertAt = 4 + (((jpg[4] & 0xFF) << 8) | (jpg[5] & 0xFF));
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        out.write(jpg, 0, insertAt);
        out.writeBytes(app1.toByteArray());
        out.write(jpg, insertAt, jpg.length - insertAt);
        return out.toByteArray();
    }

    @Test
    void jpegExifOrientationIsApplied() throws IOException {
        BufferedImage img = twoColours(32, 16, 0xFF0000, 0x0000FF); // left red, right blue
        RgbImage plain = ImageLoader.decode(jpegWithOrientation(img, 1), "o1.jpg");
        assertEquals(32, plain.width());
        assertPixel(plain, 4, 8, 255, 0, 0, 24, "orientation 1 left");

        byte[] o6 = jpegWithOrientation(img, 6);
        assertEquals(6, ExifOrientation.read(o6));
        RgbImage r6 = ImageLoader.decode(o6, "o6.jpg"); // rotate 90 degrees clockwise: left goes to the top
        assertEquals(16, r6.width(), "orientation 6 swaps width and height");
        assertEquals(32, r6.height());
        assertPixel(r6, 8, 4, 255, 0, 0, 24, "orientation 6 top");
        assertPixel(r6, 8, 27, 0, 0, 255, 24, "orientation 6 bottom");

        RgbImage r8 = ImageLoader.decode(jpegWithOrientation(img, 8), "o8.jpg"); // counter-clockwise: left to bottom
        assertEquals(16, r8.width());
        assertPixel(r8, 8, 27, 255, 0, 0, 24, "orientation 8 bottom");

        RgbImage r3 = ImageLoader.decode(jpegWithOrientation(img, 3), "o3.jpg");
        assertEquals(32, r3.width());
        assertPixel(r3, 4, 8, 0, 0, 255, 24, "orientation 3 left");

        RgbImage r2 = ImageLoader.decode(jpegWithOrientation(img, 2), "o2.jpg");
        assertPixel(r2, 4, 8, 0, 0, 255, 24, "orientation 2 (mirrored) left");
    }

    @Test
    void orientationTransformsMatchPillow() {
        // 3x2 image with distinct pixels, values = index
        byte[] b = new byte[18];
        for (int i = 0; i < 6; i++) Arrays.fill(b, i * 3, i * 3 + 3, (byte) i);
        RgbImage img = new RgbImage(3, 2, b);
        // expected index layouts (rows) per orientation, as PIL's exif_transpose produces them
        int[][] expect = {
                null, null,
                {2, 1, 0, 5, 4, 3},   // 2 FLIP_LEFT_RIGHT
                {5, 4, 3, 2, 1, 0},   // 3 ROTATE_180
                {3, 4, 5, 0, 1, 2},   // 4 FLIP_TOP_BOTTOM
                {0, 3, 1, 4, 2, 5},   // 5 TRANSPOSE (2 wide, 3 high)
                {3, 0, 4, 1, 5, 2},   // 6 ROTATE_270 (clockwise)
                {5, 2, 4, 1, 3, 0},   // 7 TRANSVERSE
                {2, 5, 1, 4, 0, 3},   // 8 ROTATE_90 (counter-clockwise)
        };
        for (int o = 2; o <= 8; o++) {
            RgbImage r = ExifOrientation.apply(img, o);
            int[] got = new int[6];
            for (int i = 0; i < 6; i++) got[i] = r.rgb()[i * 3];
            assertArrayEquals(expect[o], got, "orientation " + o + " gave " + Arrays.toString(got));
            assertEquals(o >= 5 ? 2 : 3, r.width(), "width after orientation " + o);
        }
    }

    @Test
    void unreadableInputsGiveClearErrors(@TempDir Path tmp) throws IOException {
        ImageException e1 = assertThrows(ImageException.class,
                () -> ImageLoader.decode("hello, not an image".getBytes(), "notes.txt"));
        assertTrue(e1.getMessage().contains("notes.txt") && e1.getMessage().contains("not a recognised image format"),
                e1.getMessage());
        ImageException e2 = assertThrows(ImageException.class, () -> ImageLoader.decode(new byte[0], "empty.png"));
        assertTrue(e2.getMessage().contains("empty.png") && e2.getMessage().contains("empty"), e2.getMessage());
        ImageException e3 = assertThrows(ImageException.class, () -> ImageLoader.load(tmp.resolve("missing.png")));
        assertTrue(e3.getMessage().contains("missing.png") && e3.getMessage().contains("not found"), e3.getMessage());
        byte[] png = encode(twoColours(64, 64, 0x123456, 0x654321), "png");
        Path truncated = tmp.resolve("truncated.png");
        Files.write(truncated, Arrays.copyOf(png, 60));
        ImageException e4 = assertThrows(ImageException.class, () -> ImageLoader.load(truncated));
        assertTrue(e4.getMessage().contains("truncated.png"), e4.getMessage());
        ImageException e5 = assertThrows(ImageException.class, () -> ImageLoader.load("data:image/png;base64,@@@"));
        assertTrue(e5.getMessage().contains("data:image/png"), e5.getMessage());
        ImageException e6 = assertThrows(ImageException.class, () -> ImageLoader.load("https://example.com/a.png"));
        assertTrue(e6.getMessage().contains("remote"), e6.getMessage());
    }
}
