package dev.vlm4j.preprocess.image;

import java.nio.charset.StandardCharsets;

/**
 * Reads the EXIF orientation tag (0x0112) from JPEG (APP1), PNG ({@code eXIf}) and WebP ({@code EXIF}) files
 * and applies it as Pillow's {@code ImageOps.exif_transpose} does (which transformers' {@code load_image} calls).
 */
public final class ExifOrientation {
    private ExifOrientation() {}

    /** The orientation (1..8) stored in the file's EXIF data; 1 when there is none or it is unreadable. */
    public static int read(byte[] file) {
        try {
            int o = readOrThrow(file);
            return o >= 1 && o <= 8 ? o : 1;
        } catch (RuntimeException e) {
            return 1; // malformed metadata never makes an otherwise decodable image unreadable
        }
    }

    private static int readOrThrow(byte[] b) {
        if (b.length > 4 && (b[0] & 0xFF) == 0xFF && (b[1] & 0xFF) == 0xD8) {
            int p = 2;
            while (p + 4 <= b.length) {
                if ((b[p] & 0xFF) != 0xFF) return 1;
                int marker = b[p + 1] & 0xFF;
                if (marker == 0xFF) { p++; continue; }
                if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) { p += 2; continue; }
                if (marker == 0xDA || marker == 0xD9) return 1;
                int len = u16be(b, p + 2);
                if (marker == 0xE1 && len >= 8 && startsWith(b, p + 4, "Exif\0\0"))
                    return tiffOrientation(b, p + 10, p + 2 + len);
                p += 2 + len;
            }
            return 1;
        }
        if (b.length > 8 && startsWith(b, 0, "\u0089PNG")) {
            int p = 8;
            while (p + 12 <= b.length) {
                int len = (int) u32be(b, p);
                String type = new String(b, p + 4, 4, StandardCharsets.ISO_8859_1);
                if (type.equals("eXIf")) return tiffOrientation(b, p + 8, p + 8 + len);
                if (type.equals("IDAT") || type.equals("IEND")) return 1;
                p += 12 + len;
            }
            return 1;
        }
        if (b.length > 12 && startsWith(b, 0, "RIFF") && startsWith(b, 8, "WEBP")) {
            int p = 12;
            while (p + 8 <= b.length) {
                int len = (int) u32le(b, p + 4);
                if (startsWith(b, p, "EXIF")) {
                    int s = p + 8;
                    if (startsWith(b, s, "Exif\0\0")) s += 6;
                    return tiffOrientation(b, s, p + 8 + len);
                }
                p += 8 + len + (len & 1);
            }
        }
        return 1;
    }

    private static int tiffOrientation(byte[] b, int start, int end) {
        end = Math.min(end, b.length);
        boolean le;
        if (startsWith(b, start, "II")) le = true;
        else if (startsWith(b, start, "MM")) le = false;
        else return 1;
        int ifd = start + (int) u32(b, start + 4, le);
        int n = u16(b, ifd, le);
        for (int i = 0; i < n; i++) {
            int e = ifd + 2 + 12 * i;
            if (e + 12 > end) return 1;
            if (u16(b, e, le) == 0x0112) {
                int type = u16(b, e + 2, le);
                return type == 3 ? u16(b, e + 8, le) : type == 4 ? (int) u32(b, e + 8, le) : 1;
            }
        }
        return 1;
    }

    /** The image transposed for {@code orientation} so that it displays upright. */
    public static RgbImage apply(RgbImage in, int orientation) {
        if (orientation <= 1 || orientation > 8) return in;
        int w = in.width(), h = in.height();
        boolean swap = orientation >= 5;
        int ow = swap ? h : w, oh = swap ? w : h;
        byte[] src = in.rgb(), out = new byte[src.length];
        for (int y = 0; y < oh; y++) {
            for (int x = 0; x < ow; x++) {
                int sx, sy;
                switch (orientation) {
                    case 2 -> { sx = w - 1 - x; sy = y; }          // FLIP_LEFT_RIGHT
                    case 3 -> { sx = w - 1 - x; sy = h - 1 - y; }  // ROTATE_180
                    case 4 -> { sx = x; sy = h - 1 - y; }          // FLIP_TOP_BOTTOM
                    case 5 -> { sx = y; sy = x; }                  // TRANSPOSE
                    case 6 -> { sx = y; sy = h - 1 - x; }          // ROTATE_270 (clockwise quarter turn)
                    case 7 -> { sx = w - 1 - y; sy = h - 1 - x; }  // TRANSVERSE
                    default -> { sx = w - 1 - y; sy = x; }         // 8: ROTATE_90 (counter-clockwise)
                }
                System.arraycopy(src, (sy * w + sx) * 3, out, (y * ow + x) * 3, 3);
            }
        }
        return new RgbImage(ow, oh, out);
    }

    private static boolean startsWith(byte[] b, int off, String s) {
        if (off < 0 || off + s.length() > b.length) return false;
        for (int i = 0; i < s.length(); i++) if ((b[off + i] & 0xFF) != s.charAt(i)) return false;
        return true;
    }

    private static int u16be(byte[] b, int p) { return ((b[p] & 0xFF) << 8) | (b[p + 1] & 0xFF); }
    private static long u32be(byte[] b, int p) { return ((long) u16be(b, p) << 16) | u16be(b, p + 2); }
    private static long u32le(byte[] b, int p) {
        return (b[p] & 0xFF) | ((b[p + 1] & 0xFF) << 8) | ((b[p + 2] & 0xFF) << 16) | ((long) (b[p + 3] & 0xFF) << 24);
    }
    private static int u16(byte[] b, int p, boolean le) {
        return le ? (b[p] & 0xFF) | ((b[p + 1] & 0xFF) << 8) : u16be(b, p);
    }
    private static long u32(byte[] b, int p, boolean le) { return le ? u32le(b, p) : u32be(b, p); }
}
