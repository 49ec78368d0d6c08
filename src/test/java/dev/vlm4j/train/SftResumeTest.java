package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.model.adapter.LoraAdapter;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Exact resume: a run interrupted after step 4 and resumed from checkpoint-3 (step 4's log row is dropped) logs the same loss curve (and ends with
 * the same adapter) as the uninterrupted 6-step run, with dropout on, warmup, an epoch boundary inside the run and a
 * short last batch per epoch; save_total_limit keeps the best and the last checkpoint.
 * <p>
 * Tolerances are relative 1e-6 on logged values and 1e-5 (relative L2) on the final factors, not bit equality: the CPU
 * kernels are not bit-reproducible from one run to the next in one JVM (two runs from identical weights already
 * differ in the 7th digit of the step-1 loss; MatMul's float {@code reduceLanes(ADD)} has an unspecified lane order,
 * which may differ between interpreted and compiled code).
 */
class SftResumeTest {
    @TempDir Path tmp;

    static Path threeSamples(Path dir) throws Exception {
        Path ds = dir.resolve("train.jsonl");
        Files.writeString(ds, String.join("\n",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"What color is the sky?\"},{\"role\":\"assistant\",\"content\":\"Blue.\"}]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"Say hi.\"},{\"role\":\"assistant\",\"content\":\"Hi there.\"}]}",
                "{\"query\":\"Count to three.\",\"response\":\"One, two, three.\"}"));
        return ds;
    }

    static SftArgs args(Path ds, Path out) {
        SftArgs a = new SftArgs();
        a.dataset = List.of(ds.toString());
        a.loraRank = 4;
        a.loraAlpha = 8;
        a.loraDropout = 0.1f;
        a.maxSteps = 6;
        a.learningRate = 1e-2;
        a.warmupRatio = 0.3;
        a.perDeviceTrainBatchSize = 2;
        a.loggingSteps = 1;
        a.outputDir = out.toString();
        return a;
    }

    private static SftTrainer.Result run(SftArgs a, int stopAfter) throws Exception {
        try (TrainableModel tm = TrainableModel.load(Fixtures.tinyModel())) {
            return SftTrainer.train(tm, a, SftDataset.load(a.dataset), null, s -> {}, stopAfter);
        }
    }

    @Test
    void interruptedThenResumedRunMatchesTheStraightRun() throws Exception {
        Path ds = threeSamples(tmp);
        SftArgs straight = args(ds, tmp.resolve("straight"));
        straight.saveSteps = 1;
        straight.saveTotalLimit = 2;
        SftTrainer.Result s = run(straight, Integer.MAX_VALUE);

        SftArgs cut = args(ds, tmp.resolve("cut"));
        cut.saveSteps = 3;
        SftTrainer.Result c = run(cut, 4); // interrupted after step 4; the last checkpoint is step 3's
        assertEquals(4, TrainerState.readLog(c.runDir().resolve("logging.jsonl")).size(), "rows logged before the interruption");
        Path ck3 = c.runDir().resolve("checkpoint-3");
        for (String f : List.of("adapter_model.safetensors", "adapter_config.json", "args.json", "trainer_state.json", "optimizer.safetensors"))
            assertTrue(Files.isRegularFile(ck3.resolve(f)), "checkpoint-3 lacks " + f);
        assertFalse(Files.exists(c.runDir().resolve("checkpoint-6")), "the interrupted run must stop at step 4");
        SftArgs resumed = args(ds, tmp.resolve("cut"));
        resumed.saveSteps = 3;
        resumed.resumeFromCheckpoint = ck3.toString();
        SftTrainer.Result r = run(resumed, Integer.MAX_VALUE);
        assertEquals(c.runDir(), r.runDir(), "a resumed run continues in its checkpoint's run folder");
        assertEquals(3, r.losses().size(), "steps run after resuming");

        List<Map<String, Object>> a = TrainerState.readLog(s.runDir().resolve("logging.jsonl"));
        List<Map<String, Object>> b = TrainerState.readLog(r.runDir().resolve("logging.jsonl"));
        assertEquals(6, a.size(), "straight run log rows");
        assertEquals(6, b.size(), "resumed run log rows (3 kept from before the interruption + 3 new)");
        for (int i = 0; i < 6; i++) {
            for (String k : List.of("loss", "grad_norm", "learning_rate", "epoch")) {
                double x = ((Number) a.get(i).get(k)).doubleValue(), y = ((Number) b.get(i).get(k)).doubleValue();
                assertEquals(x, y, 1e-6 * Math.max(1, Math.abs(x)), "step " + (i + 1) + " " + k + ": straight " + x + ", resumed " + y + " (differ by " + Math.abs(x - y) + ")");
            }
            assertEquals(a.get(i).get("global_step/max_steps"), b.get(i).get("global_step/max_steps"));
        }
        for (String k : List.of("loss", "grad_norm", "learning_rate", "epoch", "global_step/max_steps", "elapsed_time", "remaining_time",
                "memory(GiB)", "train_speed(iter/s)"))
            assertTrue(a.get(0).containsKey(k), "logging.jsonl row lacks " + k + ": " + a.get(0));
        LoraAdapter x = LoraAdapter.load(s.runDir().resolve("checkpoint-6")), y = LoraAdapter.load(r.runDir().resolve("checkpoint-6"));
        double diff2 = 0, norm2 = 0;
        for (var e : x.pairs().entrySet()) {
            LoraAdapter.Pair p = e.getValue(), q = y.pairs().get(e.getKey());
            for (int i = 0; i < p.a().length; i++) { diff2 += Math.pow(p.a()[i] - q.a()[i], 2); norm2 += Math.pow(p.a()[i], 2); }
            for (int i = 0; i < p.b().length; i++) { diff2 += Math.pow(p.b()[i] - q.b()[i], 2); norm2 += Math.pow(p.b()[i], 2); }
        }
        assertTrue(Math.sqrt(diff2 / norm2) <= 1e-5, "final LoRA factors differ: relative L2 error " + Math.sqrt(diff2 / norm2));

        // save_total_limit 2 with a checkpoint every step: the best (lowest step loss) and the last remain (the two
        // newest when the last is the best).
        int best = 1;
        for (int i = 1; i < 6; i++) if (s.losses().get(i) < s.losses().get(best - 1)) best = i + 1;
        Set<String> expected = new TreeSet<>(List.of("checkpoint-" + (best == 6 ? 5 : best), "checkpoint-6"));
        Set<String> found = new TreeSet<>();
        for (Path p : TrainerState.checkpoints(s.runDir())) found.add(p.getFileName().toString());
        assertEquals(expected, found, "checkpoints kept under save_total_limit 2 (losses " + s.losses() + ")");
        assertEquals(s.runDir().resolve("checkpoint-" + best), s.bestCheckpoint(), "best checkpoint");
        assertTrue(Files.isRegularFile(s.runDir().resolve("images/train_loss.png")), "images/train_loss.png");
    }
}
