package dev.vlm4j.compute.cuda;

import java.lang.foreign.MemorySegment;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * GPU time per kernel and per product shape, for finding where a step's time goes (VLM4J_CUDA_PROFILE=1): every
 * launch and cuBLASLt product is bracketed by timing events on the stream; {@link #report} waits for them and sums
 * the elapsed times by name. Off (no events at all) unless the variable is set. Not for use inside step graphs.
 */
final class CudaProfiler {
    static final boolean ON = System.getenv("VLM4J_CUDA_PROFILE") != null;

    private record Span(String name, MemorySegment start, MemorySegment end) {}

    private final CudaDriver drv;
    private final MemorySegment stream;
    private final List<Span> spans = new ArrayList<>();

    CudaProfiler(CudaDriver drv, MemorySegment stream) {
        this.drv = drv;
        this.stream = stream;
    }

    /** Records a start event (null when profiling is off). */
    MemorySegment start() {
        if (!ON) return null;
        MemorySegment e = drv.createTimingEvent();
        drv.recordEvent(e, stream);
        return e;
    }

    void end(MemorySegment start, String name) {
        if (start == null) return;
        MemorySegment e = drv.createTimingEvent();
        drv.recordEvent(e, stream);
        spans.add(new Span(name, start, e));
    }

    /** The {@code top} names by total GPU time since the last report, one line each, and forgets them. */
    String report(int top) {
        drv.streamSynchronize(stream);
        Map<String, double[]> by = new LinkedHashMap<>();
        double total = 0;
        for (Span s : spans) {
            double ms = drv.elapsedMs(s.start, s.end);
            double[] a = by.computeIfAbsent(s.name, k -> new double[2]);
            a[0] += ms;
            a[1]++;
            total += ms;
            drv.destroyEvent(s.start);
            drv.destroyEvent(s.end);
        }
        spans.clear();
        StringBuilder sb = new StringBuilder(String.format("GPU time in kernels and products: %.1f ms%n", total));
        by.entrySet().stream().sorted((x, y) -> Double.compare(y.getValue()[0], x.getValue()[0])).limit(top)
                .forEach(e -> sb.append(String.format("  %-60s %8.2f ms %6d calls%n", e.getKey(), e.getValue()[0], (long) e.getValue()[1])));
        return sb.toString();
    }
}
