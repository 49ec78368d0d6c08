package dev.vlm4j.model;

import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

class VisionWindowsTest {
    @Test
    void fiveBySevenMergedGridSplitsIntoFourWindowsRowMajor() {
        // grid 10x14 patches -> 5x7 merged tokens; window 112 px = 4 merged tokens
        VisionWindows w = new VisionWindows(List.of(new int[]{1, 10, 14}), 2, 112, 14);
        int[] firstWindow = {0, 1, 2, 3, 7, 8, 9, 10, 14, 15, 16, 17, 21, 22, 23, 24};
        assertArrayEquals(firstWindow, Arrays.copyOf(w.windowIndex, 16));
        assertArrayEquals(new int[]{4, 5, 6, 11, 12, 13, 18, 19, 20, 25, 26, 27}, Arrays.copyOfRange(w.windowIndex, 16, 28));
        // windows hold 16, 12, 4 and 3 merged tokens (4 patches each)
        assertArrayEquals(new int[]{0, 64, 112, 128, 140}, w.cuWindowSeqlens, "cu_window_seqlens");
        assertArrayEquals(new int[]{0, 140}, w.cuSeqlens);
    }

    @Test
    void windowIndexIsAPermutationAcrossSeveralItems() {
        List<int[]> grids = List.of(new int[]{1, 22, 6}, new int[]{2, 8, 24}, new int[]{1, 4, 4});
        VisionWindows w = new VisionWindows(grids, 2, 112, 14);
        int total = 11 * 3 + 2 * 4 * 12 + 2 * 2;
        assertEquals(total, w.windowIndex.length);
        boolean[] seen = new boolean[total];
        for (int i : w.windowIndex) {
            assertFalse(seen[i], "index " + i + " appears twice");
            seen[i] = true;
        }
        for (int i = 0; i < total; i++) assertEquals(i, w.windowIndex[w.reverseIndex[i]]);
        assertEquals(total * 4, w.cuWindowSeqlens[w.cuWindowSeqlens.length - 1]);
        assertArrayEquals(new int[]{0, 132, 324, 516, 532}, w.cuSeqlens, "one full-attention segment per item and temporal step");
        for (int i = 1; i < w.cuWindowSeqlens.length; i++) assertTrue(w.cuWindowSeqlens[i] > w.cuWindowSeqlens[i - 1], "empty window kept");
    }
}
