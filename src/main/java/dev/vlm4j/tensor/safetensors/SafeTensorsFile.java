package dev.vlm4j.tensor.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.*;

/**
 * One memory-mapped .safetensors file. The header is validated completely before any tensor is handed out:
 * header length, JSON, dtypes, shapes, and that every tensor's byte range matches its shape and lies inside the file.
 * Tensors returned by {@link #get} are views of the mapping (no copy); they stay valid until {@link #close()}.
 */
public final class SafeTensorsFile implements AutoCloseable {
    /** Largest header accepted (the format's reference implementation uses 100 MB). */
    static final long MAX_HEADER = 100L << 20;
    private static final ObjectMapper JSON = new ObjectMapper();

    public record Entry(String name, DType dtype, long[] shape, long begin, long end) {}

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final Map<String, Entry> entries;
    private final Map<String, String> metadata;

    private SafeTensorsFile(Path path, Arena arena, MemorySegment data, Map<String, Entry> entries, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.entries = entries;
        this.metadata = metadata;
    }

    public static SafeTensorsFile open(Path path) {
        if (!Files.isRegularFile(path)) throw CheckpointException.at(path, "file not found");
        Arena arena = Arena.ofShared();
        try (FileChannel ch = FileChannel.open(path, StandardOpenOption.READ)) {
            long size = ch.size();
            if (size < 8) throw CheckpointException.at(path, "truncated safetensors file (" + size + " bytes, no header length)");
            MemorySegment all = ch.map(FileChannel.MapMode.READ_ONLY, 0, size, arena);
            long n = all.get(ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 0);
            if (n <= 0 || n > MAX_HEADER || n > size - 8)
                throw CheckpointException.at(path, "bad safetensors header length " + n + " (file has " + size
                        + " bytes): the file is truncated or not a safetensors file");
            byte[] hb = all.asSlice(8, n).toArray(ValueLayout.JAVA_BYTE);
            JsonNode header;
            try {
                header = JSON.readTree(new String(hb, StandardCharsets.UTF_8));
            } catch (IOException e) {
                throw CheckpointException.at(path, "safetensors header is not valid JSON: " + e.getMessage());
            }
            if (header == null || !header.isObject()) throw CheckpointException.at(path, "safetensors header is not a JSON object");
            MemorySegment data = all.asSlice(8 + n);
            Map<String, Entry> entries = new LinkedHashMap<>();
            Map<String, String> meta = new LinkedHashMap<>();
            var it = header.properties().iterator();
            while (it.hasNext()) {
                var e = it.next();
                if (e.getKey().equals("__metadata__")) {
                    e.getValue().properties().forEach(m -> meta.put(m.getKey(), m.getValue().asText()));
                    continue;
                }
                entries.put(e.getKey(), parseEntry(path, e.getKey(), e.getValue(), data.byteSize()));
            }
            checkOverlaps(path, entries.values());
            return new SafeTensorsFile(path, arena, data, entries, meta);
        } catch (IOException e) {
            arena.close();
            throw CheckpointException.at(path, "cannot read: " + e.getMessage());
        } catch (RuntimeException e) {
            arena.close();
            throw e;
        }
    }

    private static Entry parseEntry(Path path, String name, JsonNode v, long dataSize) {
        String where = "tensor '" + name + "': ";
        if (!v.isObject()) throw CheckpointException.at(path, where + "header entry is not an object");
        DType dt = DType.fromSafetensors(v.path("dtype").asText(""));
        if (dt == null) throw CheckpointException.at(path, where + "unsupported dtype '" + v.path("dtype").asText() + "'");
        JsonNode sh = v.get("shape"), off = v.get("data_offsets");
        if (sh == null || !sh.isArray()) throw CheckpointException.at(path, where + "missing shape");
        if (off == null || !off.isArray() || off.size() != 2) throw CheckpointException.at(path, where + "missing data_offsets [begin, end]");
        long[] shape = new long[sh.size()];
        long numel = 1;
        long bytes;
        try {
            for (int i = 0; i < shape.length; i++) {
                if (!isLong(sh.get(i)) || sh.get(i).asLong() < 0) throw CheckpointException.at(path, where + "bad shape " + sh);
                shape[i] = sh.get(i).asLong();
                numel = Math.multiplyExact(numel, shape[i]);
            }
            bytes = Math.multiplyExact(numel, (long) dt.bytes);
        } catch (ArithmeticException overflow) {
            throw CheckpointException.at(path, where + "bad shape " + sh + " (element count overflows)");
        }
        if (!isLong(off.get(0)) || !isLong(off.get(1)))
            throw CheckpointException.at(path, where + "data_offsets " + off + " are not integers");
        long begin = off.get(0).asLong(), end = off.get(1).asLong();
        if (begin < 0 || end < begin || end > dataSize)
            throw CheckpointException.at(path, where + "data_offsets [" + begin + ", " + end + "] outside the data section of "
                    + dataSize + " bytes (truncated file?)");
        if (end - begin != bytes)
            throw CheckpointException.at(path, where + "shape " + sh + " " + dt + " needs " + bytes
                    + " bytes but data_offsets span " + (end - begin));
        return new Entry(name, dt, shape, begin, end);
    }

    /** A JSON integer that fits a long (not 2.5, not "4"). */
    private static boolean isLong(JsonNode n) {
        return n != null && n.isIntegralNumber() && n.canConvertToLong();
    }

    /** Non-empty byte ranges must not overlap; compares each with the furthest-reaching range before it. */
    private static void checkOverlaps(Path path, Collection<Entry> entries) {
        List<Entry> sorted = new ArrayList<>(entries);
        sorted.removeIf(e -> e.end() == e.begin());
        sorted.sort(Comparator.comparingLong(Entry::begin));
        Entry reach = null;
        for (Entry b : sorted) {
            if (reach != null && b.begin() < reach.end())
                throw CheckpointException.at(path, "tensors '" + reach.name() + "' and '" + b.name() + "' overlap");
            if (reach == null || b.end() > reach.end()) reach = b;
        }
    }

    public Path path() { return path; }
    public Set<String> names() { return Collections.unmodifiableSet(entries.keySet()); }
    public boolean contains(String name) { return entries.containsKey(name); }
    public Entry entry(String name) { return entries.get(name); }
    public Map<String, String> metadata() { return metadata; }

    /** The tensor as a view of the mapped file. */
    public Tensor get(String name) {
        Entry e = entries.get(name);
        if (e == null) throw CheckpointException.at(path, "no tensor named '" + name + "'");
        return new Tensor(e.dtype(), e.shape(), data.asSlice(e.begin(), e.end() - e.begin()), Device.CPU);
    }

    @Override
    public void close() { arena.close(); }
}
