package dev.vlm4j.compute.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;

/**
 * CUDA graphs for a step the model repeats (a decode step): the first time a step runs under a key its launches are
 * captured into a graph; later runs under the same key execute the model code in a <em>dry</em> mode, where nothing
 * is launched, and then replay the graph with one {@code cuGraphLaunch}. This removes the per-kernel launch cost
 * (host and GPU) of the ~500 small launches of a 7B decode step.
 * <p>
 * What makes replay valid:
 * <ul>
 * <li>Every device allocation made inside a step comes from one bump-allocated arena that restarts at zero for each
 * step, so a rerun of the same code gets the same addresses (the arena is shared by all graphs: steps run one at a
 * time and a step's result is valid until the next step).</li>
 * <li>Every host-to-device copy inside a step (token ids, rope tables, cache pointer tables) reads a pinned host slot
 * at a fixed offset; the dry run writes the new values there before the replay.</li>
 * <li>The dry run checks every operation (kernel, grid, block, shared memory, every argument; copies and products
 * likewise) against the captured list. Any difference (a changed kernel argument such as a split count, a grown
 * arena) drops the graph and the step is captured again, so a replay never computes something the eager path
 * would not.</li>
 * </ul>
 * A step must not read results back to the host (that needs a synchronisation) and must not change host-side state
 * before it completes, since a failed dry run is followed by running the step again.
 */
final class StepGraphs implements AutoCloseable {
    enum Mode { OFF, CAPTURE, DRY }

    /** Thrown by a dry run whose operations differ from the captured ones. */
    static final class Mismatch extends RuntimeException {
        Mismatch(String why) { super(why, null, false, false); }
    }

    private static final long CHUNK = 64L << 20, SLAB = 16L << 20, ALIGN = 256;
    private static final int MAX_GRAPHS = 16;

    private record Graph(MemorySegment exec, long[][] ops, long[] outcomes) {}

    private final CudaDriver drv;
    private final MemorySegment stream;
    private final Runnable reset;
    private final List<long[]> chunks = new ArrayList<>();   // {address, bytes}
    private final Map<Object, Graph> graphs = new LinkedHashMap<>(16, 0.75f, true);
    private final Set<Object> eager = new HashSet<>();
    private MemorySegment slab, event;
    private boolean pending;
    private Mode mode = Mode.OFF;
    private int chunk, cursor;
    private long off, slabOff;
    private List<long[]> recorded;
    private List<Long> outcomes;
    private long[][] expected;
    private long[] expectedOutcomes;
    private long captures, replays;

    /** {@code reset} forgets backend caches that must not cross a step boundary (the bf16 copy of an input). */
    StepGraphs(CudaDriver drv, MemorySegment stream, Runnable reset) {
        this.drv = drv;
        this.stream = stream;
        this.reset = reset;
    }

    Mode mode() { return mode; }
    boolean active() { return mode != Mode.OFF; }

    /** Steps captured and steps replayed so far (for tests and benchmarks). */
    long[] counts() { return new long[]{captures, replays}; }

    <T> T run(Object key, Supplier<T> step) {
        if (mode != Mode.OFF || eager.contains(key)) return step.get();   // nested steps belong to the outer one
        if (slab == null) {
            slab = drv.allocHost(SLAB);
            event = drv.createEvent();
        }
        if (pending) drv.eventSynchronize(event);   // the last replay has read its slots
        pending = false;
        Graph g = graphs.get(key);
        if (g != null) {
            T r = null;
            boolean ok = false;
            start(Mode.DRY);
            expected = g.ops;
            expectedOutcomes = g.outcomes;
            try {
                r = step.get();
                if (cursor != g.ops.length) throw new Mismatch("step ended after " + cursor + " of " + g.ops.length + " operations");
                ok = true;
            } catch (Mismatch m) {
                graphs.remove(key);
                drv.graphExecDestroy(g.exec);
            } finally {
                stop();
            }
            if (ok) {
                launch(g.exec);
                replays++;
                return r;
            }
        }
        return capture(key, step);
    }

    private <T> T capture(Object key, Supplier<T> step) {
        start(Mode.CAPTURE);
        recorded = new ArrayList<>();
        outcomes = new ArrayList<>();
        drv.beginCapture(stream);
        T r;
        MemorySegment graph;
        try {
            r = step.get();
        } catch (RuntimeException | Error e) {
            endQuietly();
            stop();
            // not capturable (e.g. an input too large for the slots) or a genuine error: run it eagerly from now on,
            // which rethrows the error if it is one
            eager.add(key);
            try {
                return step.get();
            } catch (RuntimeException | Error genuine) {
                eager.remove(key);   // it fails eagerly too: a bad input, not a step that cannot be captured
                throw genuine;
            }
        }
        try {
            graph = drv.endCapture(stream);
        } finally {
            stop();
        }
        MemorySegment exec;
        try {
            exec = drv.instantiate(graph);
        } finally {
            drv.graphDestroy(graph);
        }
        graphs.put(key, new Graph(exec, recorded.toArray(long[][]::new), outcomes.stream().mapToLong(Long::longValue).toArray()));
        recorded = null;
        outcomes = null;
        if (graphs.size() > MAX_GRAPHS) {
            var it = graphs.entrySet().iterator();
            drv.graphExecDestroy(it.next().getValue().exec);
            it.remove();
        }
        launch(exec);
        captures++;
        return r;
    }

    private void endQuietly() {
        try {
            drv.graphDestroy(drv.endCapture(stream));
        } catch (RuntimeException ignored) {
            // an invalidated capture has no graph to free
        }
    }

    private void launch(MemorySegment exec) {
        drv.graphLaunch(exec, stream);
        drv.recordEvent(event, stream);
        pending = true;
    }

    private void start(Mode m) {
        reset.run();
        mode = m;
        cursor = 0;
        chunk = 0;
        off = 0;
        slabOff = 0;
    }

    private void stop() {
        mode = Mode.OFF;
        expected = null;
        expectedOutcomes = null;
        reset.run();
    }

    /**
     * Records (capture) or checks (dry run) one operation. Returns true when the caller should issue it (capture).
     * {@code sig} holds every value that determines what the operation does.
     */
    boolean op(long[] sig) {
        if (mode == Mode.CAPTURE) {
            recorded.add(sig);
            outcomes.add(0L);
            cursor++;
            return true;
        }
        if (cursor >= expected.length || !Arrays.equals(expected[cursor], sig))
            throw new Mismatch("operation " + cursor + " differs from the captured step");
        cursor++;
        return false;
    }

    /**
     * The outcome the operation just checked had when it was captured (dry run): a value the issuing code learnt
     * from the library at capture time, such as "cuBLASLt fused the bias", and needs again without issuing it.
     */
    long recordedOutcome() { return expectedOutcomes[cursor - 1]; }

    /** Stores the outcome of the operation just recorded (capture). */
    void setOutcome(long value) { outcomes.set(outcomes.size() - 1, value); }

    /** A device block from the step arena (same address for the same allocation sequence). */
    long alloc(long bytes) {
        long size = Math.max(ALIGN, (bytes + ALIGN - 1) & -ALIGN);
        while (true) {
            if (chunk < chunks.size()) {
                long[] c = chunks.get(chunk);
                if (off + size <= c[1]) {
                    long p = c[0] + off;
                    off += size;
                    return p;
                }
                chunk++;
                off = 0;
                continue;
            }
            if (mode == Mode.DRY) throw new Mismatch("the step needs more arena memory than when it was captured");
            long n = Math.max(CHUNK, size);
            long p = drv.malloc(n);
            if (p == 0) throw new CudaException("out of device memory for the decode-step arena (" + n + " bytes)", 2);
            chunks.add(new long[]{p, n});
        }
    }

    /** A pinned host slot for {@code bytes} of step input (at the same offset on every run of the step). */
    MemorySegment slot(long bytes) {
        long at = (slabOff + 63) & -64L;
        if (at + bytes > SLAB) throw new IllegalStateException("step inputs exceed the " + SLAB + "-byte graph slab");
        slabOff = at + bytes;
        return slab.asSlice(at, bytes);
    }

    /** Device bytes held by the arena. */
    long arenaBytes() {
        long b = 0;
        for (long[] c : chunks) b += c[1];
        return b;
    }

    @Override
    public void close() {
        if (pending) drv.eventSynchronize(event);
        for (Graph g : graphs.values()) drv.graphExecDestroy(g.exec);
        graphs.clear();
        for (long[] c : chunks) drv.free(c[0]);
        chunks.clear();
        if (slab != null) {
            drv.freeHost(slab);
            drv.destroyEvent(event);
            slab = null;
        }
    }
}
