package dev.vlm4j.compute.cuda;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.Test;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;

import static org.junit.jupiter.api.Assertions.*;

/** The bf16-copy cache: most recent entries kept, the oldest dropped, views and clears forget (no GPU needed). */
class Bf16CopiesTest {
    private static Tensor at(MemorySegment mem, long offset, long floats) {
        return new Tensor(DType.F32, new long[]{floats}, mem.asSlice(offset * 4, floats * 4), Device.CPU);
    }

    @Test
    void keepsTheLastFewAndForgetsWhatChanges() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment mem = arena.allocate(4 * 1000, 16);
            int n = Bf16Copies.CAPACITY + 1;
            Tensor[] ts = new Tensor[n];
            MemorySegment[] cs = new MemorySegment[n];
            Bf16Copies c = new Bf16Copies();
            for (int i = 0; i < n; i++) {
                ts[i] = at(mem, 100L * i, 100);
                cs[i] = arena.allocate(200);
                c.put(ts[i], cs[i]);
            }
            assertNull(c.get(ts[0]), "the oldest entry goes when full");
            for (int i = 1; i < n; i++) assertSame(cs[i], c.get(ts[i]), "entry " + i);
            assertNull(c.get(at(mem, 100L * (n - 1), 100)), "another tensor object over the same memory is no hit");
            // a view over part of the last tensor's memory changes: that entry goes, the others stay
            c.forget(at(mem, 100L * (n - 1) + 50, 10));
            assertNull(c.get(ts[n - 1]));
            if (n > 2) assertSame(cs[n - 2], c.get(ts[n - 2]));
            c.put(ts[1], cs[0]);
            assertSame(cs[0], c.get(ts[1]), "a new copy replaces the old one");
            c.clear();
            for (Tensor t : ts) assertNull(c.get(t));
        }
    }
}
