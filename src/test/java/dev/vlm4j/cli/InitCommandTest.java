package dev.vlm4j.cli;

import dev.vlm4j.compute.Backends;
import dev.vlm4j.model.Qwen25VLModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/** {@code vlm4j init} writes a folder the model loads and runs, sharded when asked. */
class InitCommandTest {
    @Test
    void tinyPresetLoadsAndRuns(@TempDir Path dir) {
        assertEquals(0, Main.run("init", "--preset", "tiny", "--out", dir.toString(), "--seed", "3", "--shard-gb", "0.015"));
        assertTrue(Files.isRegularFile(dir.resolve("model.safetensors.index.json")), "sharded with an index");
        assertTrue(Files.isRegularFile(dir.resolve("config.json")));
        for (String quant : new String[]{"bf16", "q8_0", "q4_0"})
            try (Qwen25VLModel m = Qwen25VLModel.load(dir, Backends.create("cpu", quant, 0))) {
                var seq = m.newSequence(16);
                float[] logits = m.lastLogits(m.prefill(seq, new int[]{1000, 2000, 3000}, null, null, null));
                assertEquals(m.config().text().vocabSize(), logits.length);
                for (float f : logits) assertTrue(Float.isFinite(f), quant + ": non-finite logit");
            }
    }

    @Test
    void sameSeedSameWeights(@TempDir Path a, @TempDir Path b) throws Exception {
        Main.run("init", "--preset", "tiny", "--out", a.toString(), "--seed", "7");
        Main.run("init", "--preset", "tiny", "--out", b.toString(), "--seed", "7");
        assertEquals(-1, Files.mismatch(a.resolve("model.safetensors"), b.resolve("model.safetensors")));
    }

    @Test
    void presetsParse() {
        for (String p : new String[]{"qwen2.5-vl-3b", "qwen2.5-vl-7b", "mimo-vl-7b"})
            assertNotNull(dev.vlm4j.model.ModelConfig.parse(InitCommand.presetConfig(p)));
    }
}
