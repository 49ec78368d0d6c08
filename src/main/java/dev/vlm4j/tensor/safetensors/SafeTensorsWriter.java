package dev.vlm4j.tensor.safetensors;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.tensor.Tensor;

import java.io.IOException;
import java.io.OutputStream;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.util.Map;

/**
 * Writes tensors in the safetensors format. The file is written beside the target under a temporary name and
 * renamed into place, so an interrupted write never leaves a corrupt file behind.
 */
public final class SafeTensorsWriter {
    private static final ObjectMapper JSON = new ObjectMapper();

    private SafeTensorsWriter() {}

    public static void write(Path file, Map<String, Tensor> tensors, Map<String, String> metadata) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        if (metadata != null && !metadata.isEmpty()) {
            ObjectNode m = header.putObject("__metadata__");
            metadata.forEach(m::put);
        }
        long off = 0;
        for (var e : tensors.entrySet()) {
            Tensor t = e.getValue();
            ObjectNode n = header.putObject(e.getKey());
            n.put("dtype", t.dtype().safetensorsName);
            var sh = n.putArray("shape");
            for (long s : t.shape()) sh.add(s);
            long len = t.numel() * t.dtype().bytes;
            n.putArray("data_offsets").add(off).add(off + len);
            off += len;
        }
        byte[] hb = JSON.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
        int pad = (8 - hb.length % 8) % 8;
        Path dir = file.toAbsolutePath().getParent();
        Files.createDirectories(dir);
        Path tmp = Files.createTempFile(dir, file.getFileName().toString(), ".tmp");
        try {
            try (OutputStream out = Files.newOutputStream(tmp)) {
                ByteBuffer len = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(hb.length + pad);
                out.write(len.array());
                out.write(hb);
                for (int i = 0; i < pad; i++) out.write(' ');
                byte[] buf = new byte[1 << 20];
                for (Tensor t : tensors.values()) {
                    var seg = t.data();
                    long n = t.numel() * t.dtype().bytes;
                    for (long p = 0; p < n; p += buf.length) {
                        int k = (int) Math.min(buf.length, n - p);
                        java.lang.foreign.MemorySegment.copy(seg, ValueLayout.JAVA_BYTE, p, buf, 0, k);
                        out.write(buf, 0, k);
                    }
                }
            }
            Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);
        }
    }
}
