package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.train.autograd.GradBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code --padding_free}: a micro-batch packed into one sequence (positions, decoder attention and the vision
 * tower's attention kept within each sample) gives the loss and gradients of the same samples run one at a time.
 */
class PaddingFreeTest {
    @TempDir Path tmp;

    private Path dataset() throws Exception {
        String image = Fixtures.cases().resolve("lora/image0.png").toString().replace("\\", "\\\\");
        Path ds = tmp.resolve("train.jsonl");
        Files.writeString(ds, String.join("\n",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"<image>What is this?\"},{\"role\":\"assistant\",\"content\":\"A gradient, from dark to light.\"}],"
                        + "\"images\":[\"" + image + "\"]}",
                "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"What color is the sky?\"},{\"role\":\"assistant\",\"content\":\"Blue, mostly.\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"<image><image>Two pictures: same?\"},{\"role\":\"assistant\",\"content\":\"Yes, twice the same.\"}],"
                        + "\"images\":[\"" + image + "\",\"" + image + "\"]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"},{\"role\":\"assistant\",\"content\":\"Hi.\"},"
                        + "{\"role\":\"user\",\"content\":\"Again.\"},{\"role\":\"assistant\",\"content\":\"Hi again.\"}]}"));
        return ds;
    }

    private static Map<String, float[]> grads(GradBackend g) {
        Map<String, float[]> m = new LinkedHashMap<>();
        g.parameters().forEach((n, p) -> m.put(n, p.grad().clone()));
        return m;
    }

    @Test
    void packedStepEqualsOneSampleAtATime() throws Exception {
        try (TrainableModel tm = TrainableModel.loadForFullTraining(Fixtures.tinyModel(), n -> true, null)) {
            SftDataset data = SftDataset.load(dataset().toString());
            List<SftDataset.Example> batch = new ArrayList<>();
            for (SftDataset.Sample s : data.samples()) batch.add(data.encode(tm.vlm(), s));
            int tokens = 0;
            for (SftDataset.Example e : batch) tokens += e.lossTokens();
            GradBackend g = tm.grad();

            g.zeroGrad();
            double single = 0;
            for (SftDataset.Example e : batch) {
                double w = (double) e.lossTokens() / tokens;
                single += w * tm.lossAndBackward(e.ids(), e.labels(), e.images(), e.videos(), w, false).loss();
            }
            Map<String, float[]> ref = grads(g);

            g.zeroGrad();
            double packed = SftTrainer.packedSteps(tm, batch, batch.size(), tokens);
            Map<String, float[]> got = grads(g);

            // two micro-batches of two packed samples each: the same again
            g.zeroGrad();
            double halves = SftTrainer.packedSteps(tm, batch, 2, tokens);
            Map<String, float[]> got2 = grads(g);

            assertEquals(single, packed, 1e-6 * single, "loss, one packed sequence vs one sample at a time");
            assertEquals(single, halves, 1e-6 * single, "loss, two packed micro-batches vs one sample at a time");
            for (var pair : List.of(Map.entry("one packed sequence", got), Map.entry("two packed micro-batches", got2))) {
                double worst = 0;
                String worstName = null;
                for (var e : ref.entrySet()) {
                    float[] a = e.getValue(), b = pair.getValue().get(e.getKey());
                    double d2 = 0, n2 = 0;
                    for (int i = 0; i < a.length; i++) {
                        d2 += (double) (a[i] - b[i]) * (a[i] - b[i]);
                        n2 += (double) a[i] * a[i];
                    }
                    assertTrue(n2 > 0, "no gradient for " + e.getKey());
                    double rel = Math.sqrt(d2 / n2);
                    if (rel > worst) { worst = rel; worstName = e.getKey(); }
                }
                System.out.printf("padding_free, %s: loss %.9f vs %.9f, %d gradients, worst relative L2 %.2e (%s)%n",
                        pair.getKey(), single, pair.getKey().startsWith("one") ? packed : halves, ref.size(), worst, worstName);
                assertTrue(worst <= 1e-5, pair.getKey() + ": gradients differ by " + worst + " (relative L2) for " + worstName);
            }
        }
    }

    @Test
    void sftCommandTrainsPackedWithTheSameLosses() throws Exception {
        Path ds = dataset();
        List<List<Map<String, Object>>> logs = new ArrayList<>();
        for (String pf : List.of("false", "true")) {
            Path out = tmp.resolve("out-" + pf);
            int rc = dev.vlm4j.cli.Main.run("sft", "--model", Fixtures.tinyModel().toString(), "--dataset", ds.toString(),
                    "--lora_rank", "4", "--lora_dropout", "0", "--max_steps", "3", "--save_steps", "3", "--logging_steps", "1",
                    "--learning_rate", "1e-2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                    "--padding_free", pf, "--output_dir", out.toString(), "--disable_tqdm", "true");
            assertEquals(0, rc, "vlm4j sft --padding_free " + pf + " exit code");
            Path run;
            try (var s = Files.list(out)) { run = s.findFirst().orElseThrow(); }
            assertTrue(Files.readString(run.resolve("args.json")).contains("\"padding_free\" : " + pf), "args.json records padding_free");
            logs.add(TrainerState.readLog(run.resolve("logging.jsonl")));
        }
        assertEquals(3, logs.get(1).size(), "logging rows");
        for (int i = 0; i < 3; i++) {
            double a = ((Number) logs.get(0).get(i).get("loss")).doubleValue(), b = ((Number) logs.get(1).get(i).get("loss")).doubleValue();
            assertEquals(a, b, 1e-4 * a, "step " + (i + 1) + " loss, padded one by one vs padding_free");
        }
    }
}
