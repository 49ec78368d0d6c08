package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.model.adapter.MergeExporter;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import dev.vlm4j.train.TrainableModel;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code vlm4j export --merge_lora true} on the fixture LoRA (r 4, alpha 8, random A and B on every LM linear): the
 * merged folder loads as a plain model whose logits match the adapter applied unmerged.
 * <p>
 * The bound: merging is exact in float32 (a control, the float32 merge of {@code VisionLanguageModel.load(base,
 * adapters)}, agrees with the unmerged adapter to about 1e-5), so the only difference is rounding each merged weight
 * to bfloat16: relative error at most 2^-9 per element (the precision the published bf16 weights already have).
 * Each of the n = 14 merged matrices then perturbs the activations by about 2^-9 relative, independently, so the
 * logits move by about sqrt(n) * 2^-9 (0.73%) of their RMS. We allow twice that for the RMS difference (1.5%), 0.1
 * (1.5% of this model's largest |logit|, 6.9) for the largest single difference, and require the greedy (top-1)
 * token to agree wherever the unmerged top-1 leads by more than twice the largest difference. Measured: 0.78% and
 * 0.067. The exported tensors are also checked bit for bit against an independent round-to-nearest-even of the merge.
 */
class ExportCommandTest {
    @TempDir Path tmp;

    @Test
    void bf16RoundsToNearestEven() {
        assertEquals((short) 0x3F80, MergeExporter.toBf16(1.0f));
        assertEquals((short) 0x3F80, MergeExporter.toBf16(Float.intBitsToFloat(0x3F808000)), "a tie rounds to the even 0x3F80");
        assertEquals((short) 0x3F82, MergeExporter.toBf16(Float.intBitsToFloat(0x3F818000)), "a tie rounds to the even 0x3F82");
        assertEquals((short) 0x3F81, MergeExporter.toBf16(Float.intBitsToFloat(0x3F808001)), "above the tie rounds up");
        assertEquals((short) 0x7F80, MergeExporter.toBf16(Float.POSITIVE_INFINITY));
        assertTrue(Float.isNaN(Float.intBitsToFloat(MergeExporter.toBf16(Float.NaN) << 16)), "NaN stays NaN");
    }

    @Test
    void mergedFolderMatchesTheUnmergedAdapter() throws Exception {
        Path ckpt = tmp.resolve("checkpoint-7");
        Files.createDirectories(ckpt);
        for (String f : List.of("adapter_config.json", "adapter_model.safetensors"))
            Files.copy(Fixtures.cases().resolve("lora").resolve(f), ckpt.resolve(f));
        int rc = Main.run("export", "--adapters", ckpt.toString(), "--model", Fixtures.tinyModel().toString(), "--merge_lora", "true",
                "--max_shard_size", "10MB");
        assertEquals(0, rc, "vlm4j export exit code");
        Path merged = tmp.resolve("checkpoint-7-merged");
        for (String f : List.of("config.json", "tokenizer.json", "chat_template.json", "preprocessor_config.json", "model.safetensors.index.json"))
            assertTrue(Files.isRegularFile(merged.resolve(f)), "merged folder lacks " + f);
        JsonNode index = new ObjectMapper().readTree(merged.resolve("model.safetensors.index.json").toFile());
        Set<String> shards = new TreeSet<>();
        index.get("weight_map").properties().forEach(e -> shards.add(e.getValue().asText()));
        assertTrue(shards.size() > 1, "10MB shards of a ~40MB model: " + shards);
        for (String s : shards) {
            assertTrue(s.matches("model-\\d{5}-of-\\d{5}\\.safetensors"), s);
            try (SafeTensorsFile f = SafeTensorsFile.open(merged.resolve(s))) {
                for (String n : f.names()) assertEquals(DType.BF16, f.get(n).dtype(), n + " in " + s);
            }
        }

        // Bit for bit: merged weights are RNE(W + scale * B A) computed here independently; others are the base bytes.
        LoraAdapter lora = LoraAdapter.load(ckpt);
        try (dev.vlm4j.tensor.safetensors.Checkpoint b = dev.vlm4j.tensor.safetensors.Checkpoint.open(Fixtures.tinyModel());
             dev.vlm4j.tensor.safetensors.Checkpoint m = dev.vlm4j.tensor.safetensors.Checkpoint.open(merged)) {
            assertEquals(b.names(), m.names(), "tensor names");
            int mismatched = 0;
            for (String n : b.names()) {
                float[] want = b.get(n).toFloatArray();
                LoraAdapter.Pair p = lora.pairs().get(n);
                if (p != null) {
                    float[] f = LoraAdapter.merged(want, p, lora.scale());
                    for (int i = 0; i < f.length; i++) want[i] = Float.intBitsToFloat(MergeExporter.toBf16(f[i]) << 16);
                }
                if (!Arrays.equals(want, m.get(n).toFloatArray())) mismatched++;
            }
            assertEquals(0, mismatched, "exported tensors that differ from RNE-rounded merged / unchanged base weights");
        }

        int[] ids;
        float[] unmerged, control, fromMerged;
        try (TrainableModel tm = TrainableModel.load(Fixtures.tinyModel())) {
            ids = tm.vlm().tokenizer().encode("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
                    + "Tell me about the sea and the sky.<|im_end|>\n<|im_start|>assistant\n");
            tm.addAdapter(LoraAdapter.load(ckpt), 0f, false);
            unmerged = tm.model().trainingLogits(ids, null, null).toFloatArray();
        }
        try (VisionLanguageModel v = VisionLanguageModel.load(Fixtures.tinyModel(), new CpuBackend(), List.of(ckpt))) {
            control = v.model().trainingLogits(ids, null, null).toFloatArray();
        }
        try (VisionLanguageModel v = VisionLanguageModel.load(merged)) {
            fromMerged = v.model().trainingLogits(ids, null, null).toFloatArray();
        }
        float[] base;
        try (VisionLanguageModel v = VisionLanguageModel.load(Fixtures.tinyModel())) {
            base = v.model().trainingLogits(ids, null, null).toFloatArray();
        }
        double ctl = maxDiff(unmerged, control), got = maxDiff(unmerged, fromMerged), effect = maxDiff(unmerged, base);
        double maxAbs = 0, ss = 0, dss = 0;
        for (int i = 0; i < unmerged.length; i++) { maxAbs = Math.max(maxAbs, Math.abs(unmerged[i])); ss += unmerged[i] * unmerged[i]; dss += Math.pow(unmerged[i] - fromMerged[i], 2); }
        System.out.printf("export: max|logit| %.3f rms %.3f rms diff %.2e%n", maxAbs, Math.sqrt(ss / unmerged.length), Math.sqrt(dss / unmerged.length));
        System.out.printf("export: max |logit diff| unmerged vs f32 merge %.2e, vs exported bf16 %.2e; adapter effect %.2e%n", ctl, got, effect);
        assertTrue(effect > 0.1, "the adapter must change the logits for this test to mean anything (max change " + effect + ")");
        assertTrue(ctl < 1e-3, "float32 merge vs unmerged: max logit difference " + ctl);
        double relRms = Math.sqrt(dss / ss), relBound = 2 * Math.sqrt(14) * Math.pow(2, -9);
        assertTrue(relRms <= relBound, "exported bf16 merge vs unmerged: RMS logit difference " + relRms + " of the RMS logit (bound " + relBound + ")");
        assertTrue(got <= 0.1, "exported bf16 merge vs unmerged: max logit difference " + got + " (bound 0.1)");
        int vocab = unmerged.length / ids.length, differ = 0, compared = 0;
        for (int t = 0; t < ids.length; t++) {
            int a = argmax(unmerged, t * vocab, vocab), b = argmax(fromMerged, t * vocab, vocab);
            if (lead(unmerged, t * vocab, vocab, a) < 2 * got) continue; // a near tie: either order is within rounding
            compared++;
            if (a != b) differ++;
        }
        assertEquals(0, differ, "greedy tokens differ at " + differ + " of " + compared + " positions with a clear lead");
        assertTrue(compared > ids.length / 2, "positions with a clear top-1 lead: " + compared + " of " + ids.length);
    }

    private static double maxDiff(float[] a, float[] b) {
        double m = 0;
        for (int i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
        return m;
    }

    private static int argmax(float[] x, int off, int n) {
        int best = 0;
        for (int i = 1; i < n; i++) if (x[off + i] > x[off + best]) best = i;
        return best;
    }

    private static double lead(float[] x, int off, int n, int top) {
        double second = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) if (i != top) second = Math.max(second, x[off + i]);
        return x[off + top] - second;
    }
}
