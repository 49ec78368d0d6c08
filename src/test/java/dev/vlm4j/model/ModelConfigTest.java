package dev.vlm4j.model;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.Fixtures;
import dev.vlm4j.tensor.safetensors.CheckpointException;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.lang.reflect.RecordComponent;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Objects;
import java.util.function.Consumer;

import static org.junit.jupiter.api.Assertions.*;

class ModelConfigTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    @TempDir
    Path dir;

    /** A minimal valid published-layout config (the tiny fixture's shape), built here rather than copied. */
    static ObjectNode minimalConfig() {
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("Qwen2_5_VLForConditionalGeneration");
        c.put("model_type", "qwen2_5_vl").put("hidden_size", 64).put("intermediate_size", 128)
                .put("num_hidden_layers", 2).put("num_attention_heads", 4).put("num_key_value_heads", 2)
                .put("vocab_size", 151680).put("rope_theta", 1e6);
        c.putObject("rope_scaling").put("type", "mrope").putArray("mrope_section").add(2).add(3).add(3);
        ObjectNode v = c.putObject("vision_config");
        v.put("depth", 4).put("hidden_size", 64).put("intermediate_size", 96).put("num_heads", 4).put("out_hidden_size", 64);
        v.putArray("fullatt_block_indexes").add(1).add(3);
        return c;
    }

    private Path write(ObjectNode config) throws IOException {
        Files.writeString(dir.resolve("config.json"), JSON.writeValueAsString(config));
        return dir;
    }

    private void assertRejected(Consumer<ObjectNode> edit, String... phrases) throws IOException {
        ObjectNode c = minimalConfig();
        edit.accept(c);
        write(c);
        CheckpointException e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains(dir.resolve("config.json").toString()), "should name the file: " + e.getMessage());
        for (String p : phrases) assertTrue(e.getMessage().contains(p), "should say '" + p + "': " + e.getMessage());
    }

    /** Record equality with arrays compared by content. */
    private static void assertSameRecord(Record a, Record b) throws ReflectiveOperationException {
        for (RecordComponent rc : a.getClass().getRecordComponents()) {
            Object x = rc.getAccessor().invoke(a), y = rc.getAccessor().invoke(b);
            if (x instanceof Record rx) assertSameRecord(rx, (Record) y);
            else assertTrue(Objects.deepEquals(x, y), rc.getName() + ": " + x + " vs " + y);
        }
    }

    @Test
    void bothFixtureLayoutsGiveTheSameConfig() throws Exception {
        ModelConfig published = ModelConfig.load(Fixtures.tinyModel());
        ModelConfig t5 = ModelConfig.load(Fixtures.dir().resolve("layout-transformers5"));
        assertSameRecord(published, t5);
        var t = published.text();
        assertEquals(64, t.hiddenSize());
        assertEquals(128, t.intermediateSize());
        assertEquals(2, t.numLayers());
        assertEquals(4, t.numHeads());
        assertEquals(2, t.numKvHeads());
        assertEquals(16, t.headDim());
        assertEquals(151680, t.vocabSize());
        assertEquals(1e6, t.ropeTheta());
        assertEquals(1e-6, t.rmsNormEps());
        assertArrayEquals(new int[]{2, 3, 3}, t.mropeSection());
        assertFalse(t.tieWordEmbeddings());
        var v = published.vision();
        assertEquals(4, v.depth());
        assertEquals(64, v.hiddenSize());
        assertEquals(96, v.intermediateSize());
        assertEquals(16, v.headDim());
        assertEquals(1176, v.patchDim());
        assertTrue(v.isFullAttention(1) && v.isFullAttention(3) && !v.isFullAttention(0));
        assertEquals(151655, published.imageTokenId());
        assertEquals(151656, published.videoTokenId());
    }

    @Test
    void generationConfigOfBothLayouts() {
        GenerationConfig g = GenerationConfig.load(Fixtures.tinyModel(), 1);
        assertArrayEquals(new int[]{151645, 151643}, g.eosTokenIds());
        assertEquals(0.1, g.temperature());
        assertEquals(Boolean.TRUE, g.doSample());
        GenerationConfig g5 = GenerationConfig.load(Fixtures.dir().resolve("layout-transformers5"), 1);
        assertArrayEquals(new int[]{151645}, g5.eosTokenIds());
        assertNull(g5.temperature());
        assertArrayEquals(new int[]{7}, GenerationConfig.load(dir, 7).eosTokenIds());
    }

    @Test
    void badGenerationConfig() throws IOException {
        Files.writeString(dir.resolve("generation_config.json"), "{ not json");
        var e = assertThrows(CheckpointException.class, () -> GenerationConfig.load(dir, 1));
        assertTrue(e.getMessage().contains("generation_config.json") && e.getMessage().contains("not valid JSON"), e.getMessage());
    }

    @Test
    void minimalConfigLoads() throws IOException {
        ModelConfig c = ModelConfig.load(write(minimalConfig()));
        assertEquals(64, c.text().hiddenSize());
        assertEquals(2, c.text().numKvHeads());
        // absent or null num_key_value_heads means one KV head per attention head, as in transformers
        ObjectNode noKv = minimalConfig();
        noKv.putNull("num_key_value_heads");
        assertEquals(4, ModelConfig.load(write(noKv)).text().numKvHeads());
        noKv.remove("num_key_value_heads");
        assertEquals(4, ModelConfig.load(write(noKv)).text().numKvHeads());
    }

    @Test
    void missingConfig() {
        var e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains(dir.toString()) && e.getMessage().contains("no config.json"), e.getMessage());
    }

    @Test
    void configNotJson() throws IOException {
        Files.writeString(dir.resolve("config.json"), "{\"hidden_size\": 64,");
        var e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains("config.json") && e.getMessage().contains("not valid JSON"), e.getMessage());
        Files.writeString(dir.resolve("config.json"), "");
        e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains("config.json"), e.getMessage());
        Files.writeString(dir.resolve("config.json"), "[1]");
        e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains("config.json"), e.getMessage());
    }

    @Test
    void unsupportedArchitecture() throws IOException {
        assertRejected(c -> {
            c.putArray("architectures").add("LlamaForCausalLM");
            c.put("model_type", "llama");
        }, "unsupported architecture 'LlamaForCausalLM'");
        assertRejected(c -> {
            c.remove("architectures");
            c.put("model_type", "qwen2_vl");
        }, "unsupported architecture 'qwen2_vl'");
    }

    @Test
    void missingOrInvalidFields() throws IOException {
        assertRejected(c -> c.remove("hidden_size"), "\"hidden_size\"");
        assertRejected(c -> c.put("hidden_size", "64"), "\"hidden_size\"");
        assertRejected(c -> c.put("hidden_size", -64), "\"hidden_size\"");
        assertRejected(c -> c.put("hidden_size", 64.5), "\"hidden_size\"");
        assertRejected(c -> c.remove("vocab_size"), "\"vocab_size\"");
        assertRejected(c -> c.put("num_key_value_heads", 0), "\"num_key_value_heads\"");
        assertRejected(c -> c.put("num_key_value_heads", 3), "not a multiple");
        assertRejected(c -> c.put("num_attention_heads", 5), "not divisible");
        assertRejected(c -> c.remove("rope_scaling"), "mrope_section");
        assertRejected(c -> ((ObjectNode) c.get("rope_scaling")).putArray("mrope_section").add(4).add(4).add(4), "head_dim/2");
        assertRejected(c -> c.remove("vision_config"), "no vision_config");
        assertRejected(c -> ((ObjectNode) c.get("vision_config")).remove("hidden_size"), "\"vision_config.hidden_size\"");
        assertRejected(c -> ((ObjectNode) c.get("vision_config")).put("num_heads", 0), "\"vision_config.num_heads\"");
        assertRejected(c -> ((ObjectNode) c.get("vision_config")).put("out_hidden_size", 32), "out_hidden_size");
    }

    @Test
    void textConfigLayoutReportsMissingFields() throws IOException {
        ObjectNode c = minimalConfig();
        ObjectNode text = c.putObject("text_config");
        text.put("hidden_size", 64);
        write(c);
        var e = assertThrows(CheckpointException.class, () -> ModelConfig.load(dir));
        assertTrue(e.getMessage().contains("num_attention_heads"), e.getMessage());
    }
}
