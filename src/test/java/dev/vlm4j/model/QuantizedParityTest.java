package dev.vlm4j.model;

import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.compute.cpu.QuantMode;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Quantized weights against the fixtures' float32 reference: q8_0 must keep the top-1 token at >= 98% of the
 * positions where the reference's lead is >= 0.01; q4_0's agreement and both modes' logit errors are reported.
 */
class QuantizedParityTest {
    @ParameterizedTest
    @EnumSource(value = QuantMode.class, names = {"Q8_0", "Q4_0"})
    void topOneAgreement(QuantMode mode) {
        check(mode, 0, "");
    }

    /** The same positions reached by decoding one token at a time (the last 24 of each case). */
    @org.junit.jupiter.api.Test
    void topOneAgreementWhileDecoding() {
        check(QuantMode.Q8_0, 24, " (decode steps)");
    }

    private void check(QuantMode mode, int decodeTail, String label) {
        int firstChecked;
        int agree = 0, total = 0;
        double maxErr = 0, sumErr = 0;
        long nErr = 0;
        try (Qwen25VLModel model = Qwen25VLModel.load(Fixtures.tinyModel(), new CpuBackend(mode))) {
            for (String name : List.of("text_only", "image_describe", "two_images", "video")) {
                Path dir = Fixtures.cases().resolve(name);
                if (!Files.isDirectory(dir)) continue;
                try (SafeTensorsFile ref = SafeTensorsFile.open(dir.resolve("tensors.safetensors"))) {
                    int[] ids = Arrays.stream(ref.get("input_ids").toLongArray()).mapToInt(l -> (int) l).toArray();
                    Qwen25VLModel.VisionInput images = null, videos = null;
                    if (ref.contains("pixel_values"))
                        images = new Qwen25VLModel.VisionInput(ref.get("pixel_values"), ModelForwardParityTest.grids(ref.get("image_grid_thw")), null, false);
                    if (ref.contains("pixel_values_videos")) {
                        List<Double> spg = new ArrayList<>();
                        for (float f : ref.get("second_per_grid_ts").toFloatArray()) spg.add((double) f);
                        videos = new Qwen25VLModel.VisionInput(ref.get("pixel_values_videos"), ModelForwardParityTest.grids(ref.get("video_grid_thw")), spg, true);
                    }
                    var seq = model.newSequence(ids.length + 8);
                    int vocab = model.config().text().vocabSize();
                    float[] logits;
                    if (decodeTail > 0) {
                        // the prompt up to its last decodeTail tokens (vision placeholders all inside it), then one token
                        // per step: the matrix-vector path of decoding (8-bit activations with VNNI where present)
                        int lastVision = -1;
                        for (int i = 0; i < ids.length; i++)
                            if (ids[i] == model.config().imageTokenId() || ids[i] == model.config().videoTokenId()) lastVision = i;
                        int m = Math.max(lastVision + 1, ids.length - decodeTail);
                        logits = new float[ids.length * vocab];
                        float[] head = model.backend().toHost(model.languageModel().logits(
                                model.prefill(seq, Arrays.copyOf(ids, m), images, videos, null)));
                        System.arraycopy(head, 0, logits, 0, head.length);
                        for (int i = m; i < ids.length; i++) {
                            float[] row = model.backend().toHost(model.languageModel().logits(model.extend(seq, new int[]{ids[i]})));
                            System.arraycopy(row, 0, logits, i * vocab, vocab);
                        }
                        firstChecked = m;
                    } else {
                        Tensor hidden = model.prefill(seq, ids, images, videos, null);
                        logits = model.backend().toHost(model.languageModel().logits(hidden));
                        firstChecked = 0;
                    }
                    long[] topIds = ref.get("logits_top20_ids").toLongArray();
                    float[] topVals = ref.get("logits_top20_values").toFloatArray();
                    for (int r = firstChecked; r < ids.length; r++) {
                        for (int k = 0; k < 20; k++) {
                            double e = Math.abs(logits[r * vocab + (int) topIds[r * 20 + k]] - topVals[r * 20 + k]);
                            maxErr = Math.max(maxErr, e);
                            sumErr += e;
                            nErr++;
                        }
                        if (topVals[r * 20] - topVals[r * 20 + 1] < 0.01) continue;
                        int arg = 0;
                        for (int j = 1; j < vocab; j++) if (logits[r * vocab + j] > logits[r * vocab + arg]) arg = j;
                        total++;
                        if (arg == topIds[r * 20]) agree++;
                    }
                }
            }
        }
        double rate = (double) agree / total;
        System.out.printf("QUANT-PARITY %s%s: top-1 agreement %d/%d = %.4f; logit error on the reference top-20: max %.4f, mean %.5f%n",
                mode, label, agree, total, rate, maxErr, sumErr / nErr);
        assertTrue(total > 0, "no positions compared");
        if (mode == QuantMode.Q8_0) assertTrue(rate >= 0.98, "q8_0 top-1 agreement " + rate + " < 0.98");
    }
}
