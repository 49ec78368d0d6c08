package dev.vlm4j.compute.cuda;

import dev.vlm4j.Compare;
import dev.vlm4j.Fixtures;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The fixture cases through {@link Qwen25VLModel} on {@link CudaBackend}: in {@link Precision#F32} with the bounds
 * of ModelForwardParityTest (taps, hidden states, logits, top-20 logits, top-1 ids, greedy generation); in
 * {@link Precision#BF16}, the top-1 id must agree with transformers' float32 run at >= 95% of the positions.
 * Skipped, with the reason, without a usable CUDA device.
 */
class CudaModelParityTest {
    static final String[] CASES = {"text_only", "image_describe", "two_images", "video"};

    record Inputs(int[] ids, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos) {}

    static List<int[]> grids(Tensor t) {
        List<int[]> out = new ArrayList<>();
        long[] v = t.toLongArray();
        for (int i = 0; i < v.length; i += 3) out.add(new int[]{(int) v[i], (int) v[i + 1], (int) v[i + 2]});
        return out;
    }

    static Inputs inputs(SafeTensorsFile ref) {
        int[] ids = Arrays.stream(ref.get("input_ids").toLongArray()).mapToInt(l -> (int) l).toArray();
        Qwen25VLModel.VisionInput images = null, videos = null;
        if (ref.contains("pixel_values"))
            images = new Qwen25VLModel.VisionInput(ref.get("pixel_values"), grids(ref.get("image_grid_thw")), null, false);
        if (ref.contains("pixel_values_videos")) {
            List<Double> spg = new ArrayList<>();
            for (float f : ref.get("second_per_grid_ts").toFloatArray()) spg.add((double) f);
            videos = new Qwen25VLModel.VisionInput(ref.get("pixel_values_videos"), grids(ref.get("video_grid_thw")), spg, true);
        }
        return new Inputs(ids, images, videos);
    }

    static Path caseDir(String name) {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "CUDA unavailable: " + why);
        Path dir = Fixtures.cases().resolve(name);
        Assumptions.assumeTrue(Files.isDirectory(dir), "case " + name + " absent");
        Assumptions.assumeTrue(Files.isDirectory(Fixtures.tinyModel()), "tiny model absent");
        return dir;
    }

    static int argmax(float[] a, int off, int len) {
        int arg = 0;
        for (int j = 1; j < len; j++) if (a[off + j] > a[off + arg]) arg = j;
        return arg;
    }

    @ParameterizedTest
    @ValueSource(strings = {"text_only", "image_describe", "two_images", "video"})
    void f32MatchesTransformers(String name) {
        Path dir = caseDir(name);
        try (Qwen25VLModel model = Qwen25VLModel.load(Fixtures.tinyModel(), CudaBackend.create(0, Precision.F32));
             SafeTensorsFile ref = SafeTensorsFile.open(dir.resolve("tensors.safetensors"))) {
            var be = model.backend();
            Inputs in = inputs(ref);
            int[] ids = in.ids();
            Map<String, Tensor> taps = new HashMap<>();
            var seq = model.newSequence(ids.length + 32);
            Qwen25VLModel.Prefill p = model.embedPrompt(ids, in.images(), in.videos(), taps::put);
            assertEquals(ref.get("rope_deltas").getLong(0), p.ropeDelta(), name + " rope_deltas");
            seq.ropeDelta = p.ropeDelta();
            Tensor hidden = model.languageModel().forward(p.embeddings(), p.positions(), seq.cache, taps::put);
            double worst = 0;
            for (String k : List.of("vision.patch_embed", "vision.block0", "vision.block1", "vision.block2", "vision.block3", "vision.merger"))
                if (ref.contains(k)) {
                    float[] e = ref.get(k).toFloatArray(), a = be.toHost(taps.get(k));
                    worst = Math.max(worst, Compare.maxAbsDiff(e, a));
                    Compare.assertClose(name + " " + k, e, a, 0.02);
                }
            for (int i = 0; i < 3; i++) {
                float[] e = ref.get("hidden_state" + i).toFloatArray(), a = be.toHost(taps.get("hidden_state" + i));
                worst = Math.max(worst, Compare.maxAbsDiff(e, a));
                Compare.assertClose(name + " hidden_state" + i, e, a, 0.02);
            }
            float[] logits = be.toHost(model.languageModel().logits(hidden));
            int vocab = model.config().text().vocabSize();
            float[] lastE = ref.get("logits_last").toFloatArray(), lastA = Arrays.copyOfRange(logits, (ids.length - 1) * vocab, ids.length * vocab);
            worst = Math.max(worst, Compare.maxAbsDiff(lastE, lastA));
            Compare.assertClose(name + " logits_last", lastE, lastA, 0.02);
            long[] topIds = ref.get("logits_top20_ids").toLongArray();
            float[] topVals = ref.get("logits_top20_values").toFloatArray();
            for (int r = 0; r < ids.length; r++) {
                for (int k = 0; k < 20; k++) {
                    float got = logits[r * vocab + (int) topIds[r * 20 + k]];
                    assertTrue(Math.abs(got - topVals[r * 20 + k]) <= 0.02, name + " logit at position " + r + " id " + topIds[r * 20 + k]
                            + ": expected " + topVals[r * 20 + k] + ", got " + got);
                }
                if (topVals[r * 20] - topVals[r * 20 + 1] >= 0.01)
                    assertEquals(topIds[r * 20], argmax(logits, r * vocab, vocab), name + " top-1 id at position " + r);
            }
            long[] gen = ref.get("generated_ids").toLongArray();
            long[] got = new long[gen.length];
            float[] last = model.lastLogits(hidden);
            for (int s = 0; s < gen.length; s++) {
                got[s] = argmax(last, 0, last.length);
                last = model.lastLogits(model.extend(seq, new int[]{(int) got[s]}));
            }
            Compare.assertSameLongs(name + " generated_ids", gen, got);
            System.out.printf("CUDA f32 %s: %d positions, max abs diff over taps/hidden/logits_last %.3g, %d generated ids match%n",
                    name, ids.length, worst, gen.length);
        }
    }

    @ParameterizedTest
    @ValueSource(strings = {"text_only", "image_describe", "two_images", "video"})
    void bf16Top1Agreement(String name) {
        Path dir = caseDir(name);
        try (Qwen25VLModel model = Qwen25VLModel.load(Fixtures.tinyModel(), CudaBackend.create(0, Precision.BF16));
             SafeTensorsFile ref = SafeTensorsFile.open(dir.resolve("tensors.safetensors"))) {
            Inputs in = inputs(ref);
            int[] ids = in.ids();
            var seq = model.newSequence(ids.length + 32);
            Tensor hidden = model.prefill(seq, ids, in.images(), in.videos(), null);
            float[] logits = model.backend().toHost(model.languageModel().logits(hidden));
            int vocab = model.config().text().vocabSize();
            long[] topIds = ref.get("logits_top20_ids").toLongArray();
            float[] topVals = ref.get("logits_top20_values").toFloatArray();
            int agree = 0;
            double maxTopDiff = 0;
            for (int r = 0; r < ids.length; r++) {
                if (argmax(logits, r * vocab, vocab) == topIds[r * 20]) agree++;
                maxTopDiff = Math.max(maxTopDiff, Math.abs(logits[r * vocab + (int) topIds[r * 20]] - topVals[r * 20]));
            }
            long[] gen = ref.get("generated_ids").toLongArray();
            int genAgree = 0;
            float[] last = model.lastLogits(hidden);
            for (int s = 0; s < gen.length; s++) {
                int a = argmax(last, 0, last.length);
                if (a == gen[s]) genAgree++;
                last = model.lastLogits(model.extend(seq, new int[]{(int) gen[s]}));   // teacher-forced
            }
            double frac = agree / (double) ids.length;
            System.out.printf("CUDA bf16 %s: top-1 agreement %d/%d = %.4f, max |top-1 logit diff| %.4f, teacher-forced decode %d/%d%n",
                    name, agree, ids.length, frac, maxTopDiff, genAgree, gen.length);
            assertTrue(frac >= 0.95, name + ": bf16 top-1 agreement " + frac + " < 0.95");
        }
    }
}
