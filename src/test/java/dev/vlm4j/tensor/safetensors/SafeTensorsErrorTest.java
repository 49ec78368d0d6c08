package dev.vlm4j.tensor.safetensors;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** Malformed safetensors files must give a {@link CheckpointException} naming the file and the problem. */
class SafeTensorsErrorTest {
    @TempDir
    Path dir;

    /** Writes a file: declared header length, header text, then {@code dataBytes} zero bytes. */
    static Path raw(Path file, long declaredLength, String header, int dataBytes) throws IOException {
        byte[] h = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(8 + h.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        b.putLong(declaredLength).put(h);
        Files.write(file, b.array());
        return file;
    }

    static Path raw(Path file, String header, int dataBytes) throws IOException {
        return raw(file, header.getBytes(StandardCharsets.UTF_8).length, header, dataBytes);
    }

    private static void assertFails(Path file, String... phrases) {
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (SafeTensorsFile f = SafeTensorsFile.open(file)) {
                fail("opened " + f.names());
            }
        });
        assertTrue(e.getMessage().contains(file.toString()), "message should name the file: " + e.getMessage());
        for (String p : phrases) assertTrue(e.getMessage().contains(p), "message should say '" + p + "': " + e.getMessage());
    }

    @Test
    void missingFile() {
        assertFails(dir.resolve("absent.safetensors"), "not found");
        assertFails(dir, "not found");
    }

    @Test
    void shorterThanEightBytes() throws IOException {
        assertFails(Files.write(dir.resolve("empty.safetensors"), new byte[0]), "truncated", "0 bytes");
        assertFails(Files.write(dir.resolve("five.safetensors"), new byte[5]), "truncated", "5 bytes");
    }

    @Test
    void headerLengthOutOfRange() throws IOException {
        assertFails(raw(dir.resolve("long.safetensors"), 1000, "{}", 0), "header length 1000", "truncated");
        assertFails(raw(dir.resolve("zero.safetensors"), 0, "{}", 0), "header length 0");
        assertFails(raw(dir.resolve("negative.safetensors"), -8, "{}", 0), "header length -8");
        assertFails(raw(dir.resolve("huge.safetensors"), Long.MAX_VALUE, "{}", 0), "header length");
    }

    @Test
    void headerNotJson() throws IOException {
        assertFails(raw(dir.resolve("garbage.safetensors"), "{\"a\": [1, 2", 0), "not valid JSON");
        assertFails(raw(dir.resolve("binary.safetensors"), "\u0000\u0001\u0002xyz", 0), "not valid JSON");
        assertFails(raw(dir.resolve("array.safetensors"), "[1, 2, 3]", 0), "not a JSON object");
        assertFails(raw(dir.resolve("entry.safetensors"), "{\"w\": 5}", 0), "'w'", "not an object");
    }

    @Test
    void unknownDtype() throws IOException {
        assertFails(raw(dir.resolve("dtype.safetensors"),
                "{\"w\": {\"dtype\": \"F8_E9M9\", \"shape\": [2], \"data_offsets\": [0, 2]}}", 2), "'w'", "unsupported dtype 'F8_E9M9'");
        assertFails(raw(dir.resolve("nodtype.safetensors"),
                "{\"w\": {\"shape\": [2], \"data_offsets\": [0, 8]}}", 8), "unsupported dtype");
    }

    @Test
    void badShapes() throws IOException {
        assertFails(raw(dir.resolve("neg.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [-1, 2], \"data_offsets\": [0, 8]}}", 8), "'w'", "bad shape [-1,2]");
        assertFails(raw(dir.resolve("text.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"a\"], \"data_offsets\": [0, 8]}}", 8), "bad shape");
        assertFails(raw(dir.resolve("quoted.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [\"2\"], \"data_offsets\": [0, 8]}}", 8), "bad shape");
        assertFails(raw(dir.resolve("frac.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [2.5], \"data_offsets\": [0, 8]}}", 8), "bad shape");
        assertFails(raw(dir.resolve("overflow.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296], \"data_offsets\": [0, 8]}}", 8), "bad shape");
        assertFails(raw(dir.resolve("bytes-overflow.safetensors"),
                "{\"w\": {\"dtype\": \"F64\", \"shape\": [2305843009213693952], \"data_offsets\": [0, 8]}}", 8), "bad shape");
        assertFails(raw(dir.resolve("noshape.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"data_offsets\": [0, 8]}}", 8), "missing shape");
    }

    @Test
    void dataOffsetsOutOfRange() throws IOException {
        // lying header: the tensor ends beyond the end of the file
        assertFails(raw(dir.resolve("lying.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}", 8), "'w'", "[0, 16]", "outside");
        assertFails(raw(dir.resolve("reversed.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 0]}}", 8), "outside");
        assertFails(raw(dir.resolve("negoff.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [-8, 0]}}", 8), "outside");
        assertFails(raw(dir.resolve("textoff.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [\"0\", \"8\"]}}", 8), "data_offsets");
        assertFails(raw(dir.resolve("hugeoff.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 99999999999999999999]}}", 8), "data_offsets");
        assertFails(raw(dir.resolve("nooff.safetensors"),
                "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 8), "missing data_offsets");
    }

    @Test
    void spanDisagreesWithShape() throws IOException {
        assertFails(raw(dir.resolve("span.safetensors"),
                "{\"w\": {\"dtype\": \"BF16\", \"shape\": [2, 3], \"data_offsets\": [0, 8]}}", 16), "'w'", "needs 12 bytes", "span 8");
    }

    @Test
    void overlappingTensors() throws IOException {
        assertFails(raw(dir.resolve("overlap.safetensors"), "{"
                + "\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                + "\"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 16]}}", 16), "'a'", "'b'", "overlap");
        // an empty tensor between them must not hide the overlap of the other two
        assertFails(raw(dir.resolve("overlap-empty.safetensors"), "{"
                + "\"big\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
                + "\"empty\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]},"
                + "\"inner\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]}}", 32), "'big'", "'inner'", "overlap");
        // a small tensor nested in a big one, with a later tensor after the small one
        assertFails(raw(dir.resolve("nested.safetensors"), "{"
                + "\"big\": {\"dtype\": \"F32\", \"shape\": [8], \"data_offsets\": [0, 32]},"
                + "\"small\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]},"
                + "\"late\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [16, 24]}}", 32), "overlap");
    }

    @Test
    void wellFormedEdgeCasesOpen() throws IOException {
        Path f = raw(dir.resolve("ok.safetensors"), "{\"__metadata__\": {\"format\": \"pt\"},"
                + "\"empty\": {\"dtype\": \"F32\", \"shape\": [0, 3], \"data_offsets\": [0, 0]},"
                + "\"scalar\": {\"dtype\": \"I32\", \"shape\": [], \"data_offsets\": [0, 4]},"
                + "\"v\": {\"dtype\": \"U8\", \"shape\": [4], \"data_offsets\": [4, 8]}}  ", 8);
        try (SafeTensorsFile s = SafeTensorsFile.open(f)) {
            assertEquals("pt", s.metadata().get("format"));
            assertEquals(0, s.get("empty").numel());
            assertEquals(1, s.get("scalar").numel());
            assertEquals(4, s.get("v").numel());
            var e = assertThrows(CheckpointException.class, () -> s.get("nope"));
            assertTrue(e.getMessage().contains(f.toString()) && e.getMessage().contains("'nope'"));
        }
    }
}
