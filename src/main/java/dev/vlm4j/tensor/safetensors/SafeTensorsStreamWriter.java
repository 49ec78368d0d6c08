package dev.vlm4j.tensor.safetensors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.*;
import java.util.stream.IntStream;

/**
 * Writes safetensors files whose tensor data is produced chunk by chunk (e.g. random initialisation of a
 * multi-gigabyte model), so memory use stays at a few chunk buffers whatever the model size. Tensors are split
 * into shards of about {@code shardBytes} with a {@code model.safetensors.index.json}, as transformers writes them.
 */
public final class SafeTensorsStreamWriter {
    private static final ObjectMapper JSON = new ObjectMapper();
    /** Bytes generated per chunk; chunks are filled in parallel. */
    public static final int CHUNK = 1 << 22;

    /** Fills {@code dst} (little-endian, positioned at 0, {@code dst.remaining()} bytes) with the tensor's bytes from {@code byteOffset}. */
    public interface Filler { void fill(long byteOffset, ByteBuffer dst); }

    public record Spec(String name, DType dtype, long[] shape, Filler filler) {
        public long bytes() { return Tensor.numel(shape) * dtype.bytes; }
    }

    private SafeTensorsStreamWriter() {}

    /** Writes the tensors into {@code dir} as shards of at most about shardBytes (one file when they fit). */
    public static void writeSharded(Path dir, List<Spec> specs, long shardBytes) throws IOException {
        List<List<Spec>> shards = new ArrayList<>();
        long cur = 0;
        for (Spec s : specs) {
            if (shards.isEmpty() || cur > 0 && cur + s.bytes() > shardBytes) {
                shards.add(new ArrayList<>());
                cur = 0;
            }
            shards.getLast().add(s);
            cur += s.bytes();
        }
        Files.createDirectories(dir);
        ObjectNode index = JSON.createObjectNode();
        long total = 0;
        ObjectNode map = JSON.createObjectNode();
        for (int i = 0; i < shards.size(); i++) {
            String name = shards.size() == 1 ? "model.safetensors" : String.format("model-%05d-of-%05d.safetensors", i + 1, shards.size());
            write(dir.resolve(name), shards.get(i));
            for (Spec s : shards.get(i)) {
                map.put(s.name(), name);
                total += s.bytes();
            }
        }
        if (shards.size() > 1) {
            index.putObject("metadata").put("total_size", total);
            index.set("weight_map", map);
            JSON.writerWithDefaultPrettyPrinter().writeValue(dir.resolve("model.safetensors.index.json").toFile(), index);
        }
    }

    /** Writes one file (to a temporary name, renamed when complete). */
    public static void write(Path file, List<Spec> specs) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        header.putObject("__metadata__").put("format", "pt");
        long off = 0;
        for (Spec s : specs) {
            ObjectNode n = header.putObject(s.name());
            n.put("dtype", s.dtype().safetensorsName);
            var sh = n.putArray("shape");
            for (long d : s.shape()) sh.add(d);
            n.putArray("data_offsets").add(off).add(off + s.bytes());
            off += s.bytes();
        }
        byte[] hb = JSON.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
        int pad = (8 - hb.length % 8) % 8;
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        try (FileChannel ch = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE)) {
            ByteBuffer head = ByteBuffer.allocate(8 + hb.length + pad).order(ByteOrder.LITTLE_ENDIAN);
            head.putLong(hb.length + pad).put(hb);
            for (int i = 0; i < pad; i++) head.put((byte) ' ');
            head.flip();
            while (head.hasRemaining()) ch.write(head);
            int par = Math.max(1, Runtime.getRuntime().availableProcessors());
            ByteBuffer[] bufs = new ByteBuffer[par];
            for (int i = 0; i < par; i++) bufs[i] = ByteBuffer.allocateDirect(CHUNK).order(ByteOrder.LITTLE_ENDIAN);
            for (Spec s : specs) {
                long n = s.bytes();
                for (long p = 0; p < n; p += (long) CHUNK * par) {
                    final long base = p;
                    int k = (int) Math.min(par, (n - p + CHUNK - 1) / CHUNK);
                    IntStream.range(0, k).parallel().forEach(c -> {
                        long from = base + (long) c * CHUNK;
                        ByteBuffer b = bufs[c].clear().limit((int) Math.min(CHUNK, n - from));
                        s.filler().fill(from, b.slice().order(ByteOrder.LITTLE_ENDIAN));
                    });
                    for (int c = 0; c < k; c++) {
                        ByteBuffer b = bufs[c];
                        b.position(0);
                        while (b.hasRemaining()) ch.write(b);
                    }
                }
            }
        }
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
