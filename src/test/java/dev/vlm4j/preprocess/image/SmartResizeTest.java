package dev.vlm4j.preprocess.image;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class SmartResizeTest {
    private static void check(int h, int w, long min, long max, int eh, int ew) {
        SmartResize.Size s = SmartResize.resize(h, w, 28, min, max);
        assertEquals(new SmartResize.Size(eh, ew), s, () -> "smart_resize(" + h + ", " + w + ", min " + min + ", max "
                + max + ") gave " + s.height() + "x" + s.width() + ", expected " + eh + "x" + ew);
    }

    @Test
    void fixtureSizes() {
        check(20, 20, 3136, 50176, 56, 56);
        check(480, 640, 3136, 50176, 168, 252);
        check(777, 333, 3136, 50176, 336, 140);
        check(28, 28, 3136, 50176, 56, 56);
        check(1201, 57, 3136, 50176, 1008, 28);
        check(1080, 1920, 3136, 50176, 168, 280);
        check(3000, 4000, 3136, 50176, 168, 252);
    }

    @Test
    void unchangedWhenAlreadyAligned() {
        check(84, 112, 3136, 50176, 84, 112);
        check(140, 196, 3136, 12845056, 140, 196);
    }

    @Test
    void roundsHalfToEven() {
        // 42/28 = 1.5 -> 2 (even), 70/28 = 2.5 -> 2 (even), 98/28 = 3.5 -> 4
        check(42, 70, 0, 1L << 40, 56, 56);
        check(98, 98, 0, 1L << 40, 112, 112);
    }

    @Test
    void tinyImagesGetAtLeastOneFactor() {
        check(1, 1, 0, 50176, 28, 28);
        check(3, 5, 3136, 50176, 56, 84);
        check(10, 10, 56 * 56, 28 * 28 * 1280, 56, 56);
    }

    @Test
    void hugeImagesAreCapped() {
        check(20000, 30000, 3136, 12845056, 2912, 4368); // same as Python smart_resize
        SmartResize.Size s = SmartResize.resize(100000, 100000, 28, 3136, 12845056);
        assertTrue((long) s.height() * s.width() <= 12845056, "pixels within max: " + s);
        assertEquals(s.height(), s.width());
    }

    @Test
    void extremeButAllowedAspect() {
        check(28, 5600, 3136, 12845056, 28, 5600); // ratio exactly 200 is accepted
    }

    @Test
    void aspectRatioOver200IsRejected() {
        ImageException e = assertThrows(ImageException.class, () -> SmartResize.resize(10, 2011, 28, 3136, 50176));
        assertTrue(e.getMessage().contains("aspect ratio") && e.getMessage().contains("201.1"), e.getMessage());
    }

    @Test
    void zeroSizeIsRejected() {
        ImageException e = assertThrows(ImageException.class, () -> SmartResize.resize(0, 10, 28, 3136, 50176));
        assertTrue(e.getMessage().contains("zero size"), e.getMessage());
    }
}
