package dev.vlm4j.cli;

import dev.vlm4j.Fixtures;
import dev.vlm4j.train.SftArgs;
import dev.vlm4j.train.SftDataset;
import dev.vlm4j.train.TrainerState;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/** {@code vlm4j infer --adapters CKPT --load_data_args true} re-answers the run's held-out split into infer_result/*.jsonl. */
class InferLoadDataArgsTest {
    @TempDir Path tmp;

    @Test
    void heldOutSplitIsAnsweredIntoAResultJsonl() throws Exception {
        Path ds = tmp.resolve("d.jsonl");
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 5; i++)
            sb.append("{\"messages\":[{\"role\":\"user\",\"content\":\"Number ").append(i).append("?\"},{\"role\":\"assistant\",\"content\":\"")
                    .append(i).append(".\"}]}\n");
        Files.writeString(ds, sb.toString());
        Path out = tmp.resolve("o");
        assertEquals(0, Main.run("sft", "--model", Fixtures.tinyModel().toString(), "--dataset", ds.toString(), "--split_dataset_ratio", "0.4",
                "--max_steps", "1", "--lora_rank", "2", "--output_dir", out.toString()), "sft exit code");
        Path run;
        try (var s = Files.list(out)) { run = s.findFirst().orElseThrow(); }
        Path ckpt = run.resolve("checkpoint-1");
        assertEquals(0, Main.run("infer", "--adapters", ckpt.toString(), "--load_data_args", "true", // --model from args.json
                "--greedy", "--max-new-tokens", "3", "--thinking", "false"), "infer exit code");
        Path resultDir = ckpt.resolve("infer_result");
        Path result;
        try (var s = Files.list(resultDir)) { result = s.filter(p -> p.toString().endsWith(".jsonl")).findFirst().orElseThrow(); }
        List<Map<String, Object>> rows = TrainerState.readLog(result);
        List<SftDataset> sets = SftCommand.loadData(SftArgs.read(run.resolve("args.json")), s -> {});
        List<Object> expected = new ArrayList<>();
        for (var s : sets.get(1).samples()) expected.add(s.messages().getLast().get("content"));
        assertEquals(2, expected.size(), "ceil(0.4 * 5) held out");
        List<Object> labels = new ArrayList<>();
        for (var r : rows) {
            labels.add(r.get("labels"));
            assertTrue(r.get("response") instanceof String, "response field: " + r);
        }
        assertEquals(expected, labels, "labels are the held-out rows' answers, in order");
    }
}
