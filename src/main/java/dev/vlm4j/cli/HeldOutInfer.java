package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.api.ChatOptions;
import dev.vlm4j.api.ChatResult;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.train.SftArgs;
import dev.vlm4j.train.SftDataset;

import java.io.BufferedWriter;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.*;

/**
 * {@code vlm4j infer --adapters CKPT --load_data_args true}: rebuilds the run's held-out split from its args.json
 * (the same {@code --val_dataset}, or the same seeded {@code --split_dataset_ratio} part of {@code --dataset}),
 * answers each row's conversation up to its last assistant turn, and writes one JSONL line per row with
 * {@code messages}, {@code images}, {@code videos}, {@code response} (the generated text) and {@code labels} (the
 * reference answer), as ms-swift's {@code infer_result/*.jsonl}.
 */
final class HeldOutInfer {
    private HeldOutInfer() {}

    static int run(ModelOptions model, ChatOptions opts, Path resultPath) throws Exception {
        if (model.adapters.isEmpty()) throw new IllegalArgumentException("--load_data_args true needs --adapters CKPT (a checkpoint of a vlm4j sft run)");
        Path ckpt = model.adapters.getFirst().toAbsolutePath().normalize();
        Path argsFile = SftArgs.argsFileOf(ckpt);
        if (argsFile == null) throw new IllegalArgumentException("--load_data_args: neither " + ckpt.resolve("args.json") + " nor "
                + ckpt.getParent().resolve("args.json") + " exists");
        SftArgs a = SftArgs.read(argsFile);
        if (model.model == null) {
            if (a.model == null) throw new IllegalArgumentException(argsFile + " names no model: pass --model DIR");
            model.model = Path.of(a.model);
        }
        List<SftDataset> sets = SftCommand.loadData(a, System.err::println);
        SftDataset held = sets.get(1);
        if (held == null) throw new IllegalArgumentException(argsFile + " has no held-out split (neither val_dataset nor split_dataset_ratio > 0)");
        Path out = resultPath != null ? resultPath : ckpt.resolve("infer_result")
                .resolve(LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")) + ".jsonl");
        Files.createDirectories(out.toAbsolutePath().getParent());
        Path tmp = out.resolveSibling(out.getFileName() + ".tmp");
        ObjectMapper json = new ObjectMapper();
        int n = 0;
        try (VisionLanguageModel vlm = model.load(); BufferedWriter w = Files.newBufferedWriter(tmp, StandardCharsets.UTF_8)) {
            for (SftDataset.Sample s : held.samples()) {
                List<Map<String, Object>> msgs = s.messages().subList(0, s.messages().size() - 1);
                List<Object> images = resolve(s.images(), s.baseDir()), videos = resolve(s.videos(), s.baseDir());
                VisionLanguageModel.Prompt p = vlm.buildPrompt(msgs, images, videos, opts);
                ChatResult r = vlm.generate(p, opts.sampling(), null);
                Map<String, Object> row = new LinkedHashMap<>();
                row.put("messages", msgs);
                row.put("images", s.images());
                row.put("videos", s.videos());
                row.put("response", r.text());
                row.put("labels", s.messages().getLast().get("content"));
                w.write(json.writeValueAsString(row));
                w.newLine();
                n++;
            }
        }
        Files.move(tmp, out, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        System.err.println("vlm4j infer: " + n + " held-out rows of " + argsFile + " -> " + out);
        System.out.println(out);
        return 0;
    }

    /** Relative media paths resolve against the dataset file's folder. */
    private static List<Object> resolve(List<Object> media, Path baseDir) {
        List<Object> out = new ArrayList<>();
        for (Object o : media)
            out.add(o instanceof String str && baseDir != null && !str.contains(":") ? baseDir.resolve(str).toString() : o);
        return out;
    }
}
