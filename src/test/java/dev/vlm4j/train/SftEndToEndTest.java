package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.api.ChatResult;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.generate.SamplingOptions;
import dev.vlm4j.model.adapter.LoraAdapter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * LoRA SFT end to end on the tiny fixture model: three samples (one with an image) are learnt, the run folder has
 * ms-swift's layout, and greedy decoding with the saved adapter (loaded from disk, applied unmerged) reproduces
 * every answer.
 */
class SftEndToEndTest {
    @TempDir Path tmp;

    @Test
    void loraLearnsThreeSamplesAndDecodesThem() throws Exception {
        Path image = Fixtures.cases().resolve("lora/image0.png");
        Path ds = tmp.resolve("train.jsonl");
        Files.writeString(ds, String.join("\n",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"What color is the sky?\"},{\"role\":\"assistant\",\"content\":\"Blue.\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"},{\"role\":\"assistant\",\"content\":\"Hi there.\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"<image>What is this?\"},{\"role\":\"assistant\",\"content\":\"A gradient.\"}],"
                        + "\"images\":[\"" + image.toString().replace("\\", "\\\\") + "\"]}"));
        SftArgs a = new SftArgs();
        a.loraRank = 16;
        a.loraAlpha = 32;
        a.loraDropout = 0f;
        a.maxSteps = 60;
        a.learningRate = 2e-2;
        a.perDeviceTrainBatchSize = 3;
        a.saveSteps = 30;
        a.loggingSteps = 10;
        a.weightDecay = 0;
        a.outputDir = tmp.resolve("out").toString();
        SftDataset data = SftDataset.load(ds + "#3");
        SftTrainer.Result r;
        try (TrainableModel tm = TrainableModel.load(Fixtures.tinyModel())) {
            r = SftTrainer.train(tm, a, data, null, s -> {});
        }
        double first = r.losses().getFirst(), last = r.losses().getLast();
        System.out.printf("sft losses: first %.4f, last %.4f%n", first, last);
        assertTrue(last < 0.3 * first, "loss went from " + first + " to " + last + " (expected below 30% of the start)");
        assertTrue(r.runDir().getFileName().toString().matches("v0-\\d{8}-\\d{6}"), "run folder " + r.runDir());
        for (String f : List.of("args.json", "logging.jsonl", "checkpoint-30/adapter_model.safetensors", "checkpoint-60/adapter_config.json"))
            assertTrue(Files.isRegularFile(r.runDir().resolve(f)), "missing " + f);
        assertEquals(6, Files.readAllLines(r.runDir().resolve("logging.jsonl")).size(), "logging.jsonl lines (every 10 of 60 steps)");

        // Reload the adapter from disk (PEFT keys) and decode greedily with it applied unmerged.
        try (TrainableModel tm = TrainableModel.load(Fixtures.tinyModel())) {
            tm.addAdapter(LoraAdapter.load(r.lastCheckpoint()), 0f, false);
            VisionLanguageModel vlm = tm.vlm();
            List<String> wrong = new ArrayList<>();
            for (SftDataset.Sample s : data.samples()) {
                SftDataset.Example e = data.encode(vlm, s);
                int promptLen = e.promptLength();
                var p = new VisionLanguageModel.Prompt(e.promptText(), Arrays.copyOf(e.ids(), promptLen), e.images(), e.videos());
                ChatResult out = vlm.generate(p, SamplingOptions.greedy().toBuilder().maxNewTokens(12).build(), null);
                if (!out.answer().strip().equals(e.answer())) wrong.add("expected \"" + e.answer() + "\", decoded \"" + out.text() + "\"");
            }
            assertTrue(wrong.isEmpty(), "greedy decoding after training differs: " + wrong);
        }
    }

    @Test
    void sftCommandWritesTheMsSwiftLayout() throws Exception {
        Path ds = tmp.resolve("one.jsonl");
        Files.writeString(ds, "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"},{\"role\":\"assistant\",\"content\":\"Hi.\"}]}\n"
                + "{\"messages\":[{\"role\":\"user\",\"content\":\"Unused.\"},{\"role\":\"assistant\",\"content\":\"No.\"}]}\n");
        Path out = tmp.resolve("cli");
        int rc = dev.vlm4j.cli.Main.run("sft", "--model", Fixtures.tinyModel().toString(), "--dataset", ds + "#1", "--tuner_type", "lora",
                "--lora_rank", "4", "--lora_alpha", "8", "--target_modules", "all-linear", "--max_steps", "2", "--save_steps", "1",
                "--logging_steps", "1", "--learning_rate", "1e-3", "--per_device_train_batch_size", "1", "--gradient_accumulation_steps", "2",
                "--max_length", "512", "--output_dir", out.toString());
        assertEquals(0, rc, "vlm4j sft exit code");
        Path run;
        try (var s = Files.list(out)) { run = s.findFirst().orElseThrow(); }
        for (String f : List.of("args.json", "logging.jsonl", "checkpoint-1/adapter_model.safetensors", "checkpoint-2/adapter_config.json"))
            assertTrue(Files.isRegularFile(run.resolve(f)), "missing " + f + " in " + run);
        assertTrue(Files.readString(run.resolve("args.json")).contains("\"lora_rank\" : 4"), Files.readString(run.resolve("args.json")));
        LoraAdapter a = LoraAdapter.load(run.resolve("checkpoint-2"));
        assertEquals(14, a.pairs().size(), "LoRA pairs (2 layers x 7 linears)");
        assertEquals(2.0, a.scale(), 1e-12, "alpha / r");
    }
}
