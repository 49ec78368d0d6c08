package dev.vlm4j.tensor.safetensors;

import dev.vlm4j.Fixtures;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

class CheckpointTest {
    @TempDir
    Path dir;

    private static Tensor f32(float... v) { return Tensor.of(v, v.length); }

    private static void writeOne(Path file, String name, Tensor t) throws IOException {
        SafeTensorsWriter.write(file, Map.of(name, t), null);
    }

    private static void writeIndex(Path dir, Map<String, String> weightMap) throws IOException {
        StringBuilder sb = new StringBuilder("{\"metadata\": {}, \"weight_map\": {");
        String sep = "";
        for (var e : weightMap.entrySet()) {
            sb.append(sep).append('"').append(e.getKey()).append("\": \"").append(e.getValue()).append('"');
            sep = ", ";
        }
        Files.writeString(dir.resolve("model.safetensors.index.json"), sb.append("}}").toString());
    }

    private static CheckpointException assertOpenFails(Path dir, String... phrases) {
        CheckpointException e = assertThrows(CheckpointException.class, () -> {
            try (Checkpoint c = Checkpoint.open(dir)) {
                fail("opened " + c.names());
            }
        });
        for (String p : phrases) assertTrue(e.getMessage().contains(p), "should say '" + p + "': " + e.getMessage());
        return e;
    }

    @Test
    void writerReaderRoundTrip() throws IOException {
        float[] fv = {1.5f, -2.25f, 0f, 3.4e38f, Float.MIN_VALUE, -0f};
        short[] bf = {(short) 0x3f80, (short) 0xc000, (short) 0x7f80, 0x0000}; // 1, -2, +inf, 0
        long[] lv = {Long.MIN_VALUE, -1, 0, 151645, Long.MAX_VALUE, 7};
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("f", Tensor.of(fv, 2, 3));
        tensors.put("b", new Tensor(DType.BF16, new long[]{4}, MemorySegment.ofArray(bf), Device.CPU));
        tensors.put("i", Tensor.ofLongs(lv, 3, 2));
        tensors.put("empty", Tensor.of(new float[0], 0, 5));
        Path file = dir.resolve("rt.safetensors");
        SafeTensorsWriter.write(file, tensors, Map.of("format", "pt"));
        byte[] raw = Files.readAllBytes(file);
        long headerLength = java.nio.ByteBuffer.wrap(raw, 0, 8).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong();
        assertEquals(0, headerLength % 8, "header padded to 8 bytes");
        assertEquals(8 + headerLength + 6 * 4 + 4 * 2 + 6 * 8, raw.length);
        try (SafeTensorsFile s = SafeTensorsFile.open(file)) {
            assertEquals(List.of("f", "b", "i", "empty"), List.copyOf(s.names()));
            assertEquals("pt", s.metadata().get("format"));
            Tensor f = s.get("f");
            assertEquals(DType.F32, f.dtype());
            assertArrayEquals(new long[]{2, 3}, f.shape());
            assertArrayEquals(fv, f.toFloatArray());
            Tensor b = s.get("b");
            assertEquals(DType.BF16, b.dtype());
            assertArrayEquals(new float[]{1f, -2f, Float.POSITIVE_INFINITY, 0f}, b.toFloatArray());
            assertArrayEquals(bf, b.data().toArray(ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(java.nio.ByteOrder.LITTLE_ENDIAN)));
            Tensor i = s.get("i");
            assertEquals(DType.I64, i.dtype());
            assertArrayEquals(new long[]{3, 2}, i.shape());
            assertArrayEquals(lv, i.toLongArray());
            assertEquals(0, s.get("empty").numel());
        }
        // the temporary file is gone and nothing else was left behind
        try (var files = Files.list(dir)) { assertEquals(List.of(file), files.toList()); }
    }

    @Test
    void tinyFixtureOpens() {
        try (Checkpoint c = Checkpoint.open(Fixtures.tinyModel())) {
            assertEquals(81, c.names().size());
            Tensor emb = c.get("model.embed_tokens.weight", 151680, 64);
            assertEquals(DType.BF16, emb.dtype());
            assertNotNull(c.get("visual.blocks.0.attn.qkv.weight"));
            assertNotNull(c.get("lm_head.weight", 151680, 64));
            assertNull(c.getOrNull("model.norm.nope", 64));
        }
    }

    @Test
    void newNameSchemeMapsToTheCanonicalNames() throws IOException {
        List<String> names = List.of("model.layers.0.self_attn.q_proj.weight", "model.layers.1.mlp.down_proj.weight",
                "model.norm.weight", "visual.blocks.0.attn.qkv.weight", "visual.merger.ln_q.weight", "lm_head.weight");
        Map<String, float[]> expected = new LinkedHashMap<>();
        Map<String, Tensor> shard1 = new LinkedHashMap<>(), shard2 = new LinkedHashMap<>();
        Map<String, String> index = new LinkedHashMap<>();
        try (Checkpoint fixture = Checkpoint.open(Fixtures.tinyModel())) {
            for (String n : names) {
                Tensor t = fixture.get(n);
                expected.put(n, t.toFloatArray());
                String onDisk = n.startsWith("model.") ? "model.language_model." + n.substring(6)
                        : n.startsWith("visual.") ? "model." + n : n;
                assertEquals(n, Checkpoint.canonicalName(onDisk));
                Map<String, Tensor> shard = n.startsWith("visual.") ? shard2 : shard1;
                // copy to the heap: the fixture's mapping is closed before the files are written
                shard.put(onDisk, new Tensor(t.dtype(), t.shape(),
                        MemorySegment.ofArray(t.data().toArray(ValueLayout.JAVA_BYTE)), Device.CPU));
                index.put(onDisk, n.startsWith("visual.") ? "model-00002-of-00002.safetensors" : "model-00001-of-00002.safetensors");
            }
        }
        SafeTensorsWriter.write(dir.resolve("model-00001-of-00002.safetensors"), shard1, Map.of("format", "pt"));
        SafeTensorsWriter.write(dir.resolve("model-00002-of-00002.safetensors"), shard2, Map.of("format", "pt"));
        writeIndex(dir, index);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertEquals(Set.copyOf(names), c.names());
            for (String n : names) assertArrayEquals(expected.get(n), c.get(n).toFloatArray(), n);
            assertFalse(c.contains("model.language_model.norm.weight"));
        }
        // the same files without the index (folder scan) give the same names
        Files.delete(dir.resolve("model.safetensors.index.json"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertEquals(Set.copyOf(names), c.names());
        }
    }

    @Test
    void canonicalNames() {
        assertEquals("model.layers.3.mlp.up_proj.weight", Checkpoint.canonicalName("model.language_model.layers.3.mlp.up_proj.weight"));
        assertEquals("visual.patch_embed.proj.weight", Checkpoint.canonicalName("model.visual.patch_embed.proj.weight"));
        assertEquals("lm_head.weight", Checkpoint.canonicalName("lm_head.weight"));
        assertEquals("model.embed_tokens.weight", Checkpoint.canonicalName("model.embed_tokens.weight"));
        assertEquals("visual.merger.mlp.0.bias", Checkpoint.canonicalName("visual.merger.mlp.0.bias"));
    }

    @Test
    void indexListsAMissingShard() throws IOException {
        writeOne(dir.resolve("a.safetensors"), "x", f32(1, 2));
        writeIndex(dir, Map.of("x", "a.safetensors", "y", "b.safetensors"));
        assertOpenFails(dir, "model.safetensors.index.json", "'b.safetensors'", "missing");
    }

    @Test
    void indexListsATensorTheShardLacks() throws IOException {
        writeOne(dir.resolve("a.safetensors"), "x", f32(1, 2));
        writeIndex(dir, Map.of("x", "a.safetensors", "model.ghost", "a.safetensors"));
        assertOpenFails(dir, "model.safetensors.index.json", "'model.ghost'", "a.safetensors", "does not hold");
    }

    @Test
    void badIndexFiles() throws IOException {
        writeOne(dir.resolve("a.safetensors"), "x", f32(1, 2));
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"weight_map\": ");
        assertOpenFails(dir, "model.safetensors.index.json", "not valid JSON");
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\": {}}");
        assertOpenFails(dir, "model.safetensors.index.json", "weight_map");
        Files.writeString(dir.resolve("model.safetensors.index.json"), "[]");
        assertOpenFails(dir, "model.safetensors.index.json", "weight_map");
        writeIndex(dir, Map.of("x", "../a.safetensors"));
        assertOpenFails(dir, "model.safetensors.index.json", "leaves the model folder");
    }

    @Test
    void aBadShardIsNamed() throws IOException {
        writeOne(dir.resolve("a.safetensors"), "x", f32(1, 2));
        Files.write(dir.resolve("b.safetensors"), new byte[]{1, 2, 3});
        writeIndex(dir, Map.of("x", "a.safetensors", "y", "b.safetensors"));
        assertOpenFails(dir, dir.resolve("b.safetensors").toString(), "truncated");
    }

    @Test
    void duplicateTensors() throws IOException {
        writeOne(dir.resolve("a.safetensors"), "model.norm.weight", f32(1, 2));
        writeOne(dir.resolve("b.safetensors"), "model.language_model.norm.weight", f32(1, 2));
        assertOpenFails(dir, "norm.weight", "also appears in");
        Path one = Files.createDirectory(dir.resolve("one"));
        Map<String, Tensor> both = new LinkedHashMap<>();
        both.put("model.norm.weight", f32(1, 2));
        both.put("model.language_model.norm.weight", f32(3, 4));
        SafeTensorsWriter.write(one.resolve("model.safetensors"), both, null);
        assertOpenFails(one, "model.safetensors", "two name schemes");
    }

    @Test
    void missingFolderOrWeights() throws IOException {
        assertOpenFails(dir.resolve("nope"), "nope", "not found");
        Files.writeString(dir.resolve("pytorch_model.bin"), "x");
        assertOpenFails(dir, dir.toString(), "no model.safetensors");
    }

    @Test
    void shapeDisagreeingWithTheConfig() throws IOException {
        Path file = dir.resolve("model.safetensors");
        writeOne(file, "model.norm.weight", Tensor.of(new float[6], 2, 3));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertArrayEquals(new long[]{2, 3}, c.get("model.norm.weight", 2, 3).shape());
            var e = assertThrows(CheckpointException.class, () -> c.get("model.norm.weight", 3, 2));
            assertTrue(e.getMessage().contains(file.toString()), e.getMessage());
            assertTrue(e.getMessage().contains("'model.norm.weight'") && e.getMessage().contains("[2, 3]")
                    && e.getMessage().contains("[3, 2]") && e.getMessage().contains("config.json"), e.getMessage());
            e = assertThrows(CheckpointException.class, () -> c.get("model.norm.weight", 6));
            assertTrue(e.getMessage().contains("[6]"), e.getMessage());
            e = assertThrows(CheckpointException.class, () -> c.get("lm_head.weight"));
            assertTrue(e.getMessage().contains(dir.toString()) && e.getMessage().contains("'lm_head.weight'"), e.getMessage());
        }
    }
}
