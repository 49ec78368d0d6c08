package dev.vlm4j.cli;

import dev.vlm4j.compute.cpu.Parallel;
import dev.vlm4j.train.SftArgs;
import dev.vlm4j.train.SftDataset;
import dev.vlm4j.train.SftTrainer;
import dev.vlm4j.train.TrainableModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.Callable;

/** {@code vlm4j sft}: LoRA supervised fine-tuning with ms-swift's option spellings (see {@link SftArgs}). */
@Command(name = "sft", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Supervised fine-tuning (LoRA, or --train_type full) on ms-swift JSONL datasets (messages, <image> tags with images lists).",
                "Loss on every assistant turn (<|im_end|> included); AdamW, gradient clipping, warmup then cosine decay,",
                "gradient accumulation, evaluation loss, exact resume. Writes output_dir/vN-YYYYMMDD-HHMMSS/ with args.json,",
                "logging.jsonl, images/*.png and checkpoint-N/ (PEFT adapter, trainer_state.json, optimizer.safetensors)."})
public final class SftCommand implements Callable<Integer> {
    @Mixin SftArgs args;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Override
    public Integer call() throws Exception {
        args.validate();
        Path model = Path.of(args.model);
        if (!Files.isDirectory(model)) throw new IllegalArgumentException("model folder " + model + " not found");
        if (threads != null) Parallel.setThreads(threads);
        args.model = model.toAbsolutePath().toString();
        List<SftDataset> sets = loadData(args, System.err::println);
        try (TrainableModel tm = SftTrainer.loadModel(args)) {
            SftTrainer.Result r = SftTrainer.train(tm, args, sets.get(0), sets.get(1), System.err::println);
            System.err.println("vlm4j sft: last checkpoint " + r.lastCheckpoint() + ", best " + r.bestCheckpoint());
            System.out.println(r.lastCheckpoint());
        }
        return 0;
    }

    /**
     * The training and validation sets of a run's arguments: {@code --val_dataset} when given, else a
     * {@code --split_dataset_ratio} part of {@code --dataset}, else no validation set (null).
     */
    public static List<SftDataset> loadData(SftArgs a, java.util.function.Consumer<String> log) {
        SftDataset train = SftDataset.load(a.dataset, a.strict, a.dataSeed, log);
        SftDataset val = null;
        if (a.valDataset != null && !a.valDataset.isEmpty()) val = SftDataset.load(a.valDataset, a.strict, a.dataSeed, log);
        else if (a.splitDatasetRatio > 0) {
            List<SftDataset> parts = train.split(a.splitDatasetRatio, a.dataSeed);
            train = parts.get(0);
            val = parts.get(1);
        }
        return java.util.Arrays.asList(train, val);
    }
}
