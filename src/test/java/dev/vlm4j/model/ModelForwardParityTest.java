package dev.vlm4j.model;

import dev.vlm4j.Compare;
import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The model alone (no tokenizer, no image preprocessing): feeds each fixture case's input_ids and pixel values
 * and checks positions, vision taps, hidden states, logits and greedy generation against transformers.
 */
class ModelForwardParityTest {
    static Qwen25VLModel model;

    @BeforeAll
    static void load() { model = Qwen25VLModel.load(Fixtures.tinyModel(), new CpuBackend()); }

    @AfterAll
    static void close() { if (model != null) model.close(); }

    static List<int[]> grids(Tensor t) {
        List<int[]> out = new ArrayList<>();
        long[] v = t.toLongArray();
        for (int i = 0; i < v.length; i += 3) out.add(new int[]{(int) v[i], (int) v[i + 1], (int) v[i + 2]});
        return out;
    }

    @ParameterizedTest
    @ValueSource(strings = {"text_only", "image_describe", "two_images", "video"})
    void matchesTransformers(String name) {
        Path dir = Fixtures.cases().resolve(name);
        org.junit.jupiter.api.Assumptions.assumeTrue(Files.isDirectory(dir), "case " + name + " absent");
        try (SafeTensorsFile ref = SafeTensorsFile.open(dir.resolve("tensors.safetensors"))) {
            int[] ids = Arrays.stream(ref.get("input_ids").toLongArray()).mapToInt(l -> (int) l).toArray();
            Qwen25VLModel.VisionInput images = null, videos = null;
            if (ref.contains("pixel_values"))
                images = new Qwen25VLModel.VisionInput(ref.get("pixel_values"), grids(ref.get("image_grid_thw")), null, false);
            if (ref.contains("pixel_values_videos")) {
                List<Double> spg = new ArrayList<>();
                for (float f : ref.get("second_per_grid_ts").toFloatArray()) spg.add((double) f);
                videos = new Qwen25VLModel.VisionInput(ref.get("pixel_values_videos"), grids(ref.get("video_grid_thw")), spg, true);
            }
            Map<String, Tensor> taps = new HashMap<>();
            var seq = model.newSequence(ids.length + 32);
            Qwen25VLModel.Prefill p = model.embedPrompt(ids, images, videos, taps::put);
            long[] pos = new long[3 * ids.length];
            for (int s = 0; s < 3; s++) System.arraycopy(p.positions()[s], 0, pos, s * ids.length, ids.length);
            Compare.assertSameLongs(name + " position_ids", ref.get("position_ids").toLongArray(), pos);
            assertEquals(ref.get("rope_deltas").getLong(0), p.ropeDelta(), name + " rope_deltas");
            seq.ropeDelta = p.ropeDelta();
            Tensor hidden = model.languageModel().forward(p.embeddings(), p.positions(), seq.cache, taps::put);
            for (String k : List.of("vision.patch_embed", "vision.block0", "vision.block1", "vision.block2", "vision.block3", "vision.merger"))
                if (ref.contains(k)) Compare.assertClose(name + " " + k, ref.get(k).toFloatArray(), taps.get(k).toFloatArray(), 0.02);
            for (int i = 0; i < 3; i++)
                Compare.assertClose(name + " hidden_state" + i, ref.get("hidden_state" + i).toFloatArray(), taps.get("hidden_state" + i).toFloatArray(), 0.02);
            float[] logits = model.backend().toHost(model.languageModel().logits(hidden));
            int vocab = model.config().text().vocabSize();
            Compare.assertClose(name + " logits_last", ref.get("logits_last").toFloatArray(),
                    Arrays.copyOfRange(logits, (ids.length - 1) * vocab, ids.length * vocab), 0.02);
            long[] topIds = ref.get("logits_top20_ids").toLongArray();
            float[] topVals = ref.get("logits_top20_values").toFloatArray();
            for (int r = 0; r < ids.length; r++) {
                for (int k = 0; k < 20; k++) {
                    float got = logits[r * vocab + (int) topIds[r * 20 + k]];
                    assertTrue(Math.abs(got - topVals[r * 20 + k]) <= 0.02, name + " logit at position " + r + " id " + topIds[r * 20 + k]
                            + ": expected " + topVals[r * 20 + k] + ", got " + got);
                }
                if (topVals[r * 20] - topVals[r * 20 + 1] >= 0.01) {
                    int arg = 0;
                    for (int j = 1; j < vocab; j++) if (logits[r * vocab + j] > logits[r * vocab + arg]) arg = j;
                    assertEquals(topIds[r * 20], arg, name + " top-1 id at position " + r);
                }
            }
            // greedy generation, never stopping early
            long[] gen = ref.get("generated_ids").toLongArray();
            long[] got = new long[gen.length];
            float[] last = model.lastLogits(hidden);
            for (int s = 0; s < gen.length; s++) {
                int arg = 0;
                for (int j = 1; j < last.length; j++) if (last[j] > last[arg]) arg = j;
                got[s] = arg;
                last = model.lastLogits(model.extend(seq, new int[]{arg}));
            }
            Compare.assertSameLongs(name + " generated_ids", gen, got);
        }
    }
}
