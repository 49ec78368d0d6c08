package dev.vlm4j.model;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class RopeIndexTest {
    static final int IMG = 151655, VID = 151656;

    @Test
    void textOnlyCountsUpOnAllStreams() {
        RopeIndex.Result r = RopeIndex.compute(new int[]{1, 2, 3, 4}, List.of(), IMG, VID, 2, 2);
        for (int s = 0; s < 3; s++) assertArrayEquals(new long[]{0, 1, 2, 3}, r.positions()[s]);
        assertEquals(0, r.ropeDelta());
    }

    @Test
    void imageBlockUsesGridPositionsAndTextResumesAfterTheLargerSide() {
        // 2 text tokens, an image of 4x6 patches (2x3 merged tokens), 1 text token
        int[] ids = {7, 8, IMG, IMG, IMG, IMG, IMG, IMG, 9};
        RopeIndex.Result r = RopeIndex.compute(ids, List.of(new RopeIndex.Grid(1, 4, 6, 0, false)), IMG, VID, 2, 2);
        assertArrayEquals(new long[]{0, 1, 2, 2, 2, 2, 2, 2, 5}, r.positions()[0]);
        assertArrayEquals(new long[]{0, 1, 2, 2, 2, 3, 3, 3, 5}, r.positions()[1]);
        assertArrayEquals(new long[]{0, 1, 2, 3, 4, 2, 3, 4, 5}, r.positions()[2]);
        assertEquals(5 + 1 - ids.length, r.ropeDelta());
        long[][] next = RopeIndex.decodePositions(ids.length, 2, r.ropeDelta());
        assertArrayEquals(new long[]{6, 7}, next[0]);
    }

    @Test
    void videoTemporalPositionsFollowSecondsPerGrid() {
        // 3 temporal steps of 1x1 merged token, 1 second per grid step, 2 tokens per second
        int[] ids = {VID, VID, VID, 5};
        RopeIndex.Result r = RopeIndex.compute(ids, List.of(new RopeIndex.Grid(3, 2, 2, 1.0, true)), IMG, VID, 2, 2);
        assertArrayEquals(new long[]{0, 2, 4, 1}, r.positions()[0]);
        assertEquals(4 + 1 - 4, r.ropeDelta());
    }

    @Test
    void placeholderCountMismatchIsAnError() {
        int[] ids = {IMG, IMG, 3};
        var e = assertThrows(IllegalArgumentException.class,
                () -> RopeIndex.compute(ids, List.of(new RopeIndex.Grid(1, 4, 4, 0, false)), IMG, VID, 2, 2));
        assertTrue(e.getMessage().contains("needs 4 placeholder tokens"), e.getMessage());
        assertThrows(IllegalArgumentException.class, () -> RopeIndex.compute(new int[]{IMG}, List.of(), IMG, VID, 2, 2));
        assertThrows(IllegalArgumentException.class,
                () -> RopeIndex.compute(new int[]{1}, List.of(new RopeIndex.Grid(1, 2, 2, 0, false)), IMG, VID, 2, 2));
    }
}
