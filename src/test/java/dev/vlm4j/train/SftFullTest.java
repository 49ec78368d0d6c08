package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Full fine-tuning ({@code --train_type full}) on the tiny model: float32 master weights for the LM (ViT and merger
 * frozen by default), the loss falls, frozen weights stay bit-identical, checkpoint-N is a loadable model folder in the
 * published layout whose logits equal the in-memory model's, and an interrupted run resumes to the same losses.
 */
class SftFullTest {
    @TempDir Path tmp;

    private static SftArgs args(Path ds, Path out) {
        SftArgs a = SftResumeTest.args(ds, out);
        a.trainType = "full";
        a.model = Fixtures.tinyModel().toString();
        a.learningRate = 2e-3;
        a.loraDropout = 0f;
        a.maxSteps = 4;
        a.saveSteps = 2;
        return a;
    }

    @Test
    void fullFineTuningTrainsSavesReloadsAndResumes() throws Exception {
        Path ds = SftResumeTest.threeSamples(tmp);
        SftArgs a = args(ds, tmp.resolve("straight"));
        SftTrainer.Result r;
        float[] trainedLogits;
        int[] ids;
        try (TrainableModel tm = SftTrainer.loadModel(a)) {
            assertTrue(tm.masters().keySet().stream().allMatch(n -> LoraTargets.part(n).equals("llm")), "only LM weights are trainable by default");
            assertTrue(tm.masters().containsKey("lm_head.weight") && tm.masters().containsKey("model.embed_tokens.weight"), "embeddings and lm_head train");
            r = SftTrainer.train(tm, a, SftDataset.load(a.dataset), null, s -> {});
            ids = tm.vlm().tokenizer().encode("<|im_start|>user\nSay hi.<|im_end|>\n<|im_start|>assistant\n");
            trainedLogits = tm.model().trainingLogits(ids, null, null).toFloatArray();
        }
        assertTrue(r.losses().getLast() < r.losses().getFirst(), "loss should fall: " + r.losses());
        Path ck = r.runDir().resolve("checkpoint-4");
        for (String f : List.of("config.json", "tokenizer.json", "model.safetensors.index.json", "trainer_state.json", "optimizer.safetensors", "args.json"))
            assertTrue(Files.isRegularFile(ck.resolve(f)), "checkpoint-4 lacks " + f);
        try (Checkpoint base = Checkpoint.open(Fixtures.tinyModel()); Checkpoint saved = Checkpoint.open(ck)) {
            assertEquals(base.names(), saved.names(), "tensor names of the saved checkpoint");
            for (String n : base.names()) {
                Tensor b = base.get(n), s = saved.get(n);
                if (LoraTargets.part(n).equals("llm")) {
                    assertEquals(DType.F32, s.dtype(), n + " is saved as its float32 master");
                } else {
                    assertEquals(DType.BF16, s.dtype(), n);
                    assertArrayEquals(b.toFloatArray(), s.toFloatArray(), "frozen " + n + " changed");
                }
            }
            assertFalse(Arrays.equals(base.get("model.layers.0.mlp.up_proj.weight").toFloatArray(),
                    saved.get("model.layers.0.mlp.up_proj.weight").toFloatArray()), "a trained weight did not change");
        }
        try (VisionLanguageModel v = VisionLanguageModel.load(ck)) {
            float[] reloaded = v.model().trainingLogits(ids, null, null).toFloatArray();
            double d = 0;
            for (int i = 0; i < reloaded.length; i++) d = Math.max(d, Math.abs(reloaded[i] - trainedLogits[i]));
            assertTrue(d <= 1e-4, "logits of the reloaded checkpoint differ from the trained model's by " + d);
        }

        SftArgs cut = args(ds, tmp.resolve("cut"));
        SftTrainer.Result c;
        try (TrainableModel tm = SftTrainer.loadModel(cut)) {
            c = SftTrainer.train(tm, cut, SftDataset.load(cut.dataset), null, s -> {}, 2);
        }
        SftArgs res = args(ds, tmp.resolve("cut"));
        res.resumeFromCheckpoint = c.runDir().resolve("checkpoint-2").toString();
        try (TrainableModel tm = SftTrainer.loadModel(res)) {
            SftTrainer.train(tm, res, SftDataset.load(res.dataset), null, s -> {});
        }
        List<Map<String, Object>> x = TrainerState.readLog(r.runDir().resolve("logging.jsonl")), y = TrainerState.readLog(c.runDir().resolve("logging.jsonl"));
        assertEquals(x.size(), y.size(), "log rows");
        for (int i = 0; i < x.size(); i++) {
            double p = ((Number) x.get(i).get("loss")).doubleValue(), q = ((Number) y.get(i).get("loss")).doubleValue();
            assertEquals(p, q, 1e-6 * Math.max(1, Math.abs(p)), "step " + (i + 1) + " loss: straight " + p + ", resumed " + q);
        }
    }
}
