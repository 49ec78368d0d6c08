package dev.vlm4j.cli;

import dev.vlm4j.compute.cpu.Parallel;
import dev.vlm4j.train.SftDataset;
import dev.vlm4j.train.SftTrainer;
import dev.vlm4j.train.TrainableModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import java.util.concurrent.Callable;

/** {@code vlm4j sft}: LoRA supervised fine-tuning with ms-swift's option spellings. */
@Command(name = "sft", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Supervised fine-tuning with LoRA on ms-swift JSONL datasets (messages, <image> tags with images lists).",
                "Loss on the last assistant turn; AdamW, gradient clipping, warmup then cosine decay, gradient accumulation.",
                "Writes output_dir/vN-YYYYMMDD-HHMMSS/ with args.json, logging.jsonl and checkpoint-N/ PEFT adapters."})
public final class SftCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR") Path model;
    @Option(names = "--dataset", required = true, split = ",", paramLabel = "PATH[#N]", description = "JSONL file(s); #N keeps the first N samples.")
    List<String> dataset;
    @Option(names = {"--train_type", "--tuner_type"}, defaultValue = "lora", description = "lora (only).") String trainType;
    @Option(names = "--lora_rank", defaultValue = "8") int loraRank;
    @Option(names = "--lora_alpha", defaultValue = "32") double loraAlpha;
    @Option(names = "--lora_dropout", defaultValue = "0.05") float loraDropout;
    @Option(names = "--target_modules", defaultValue = "all-linear", split = ",") List<String> targetModules;
    @Option(names = "--num_train_epochs", defaultValue = "1") int epochs;
    @Option(names = "--max_steps", defaultValue = "-1") int maxSteps;
    @Option(names = "--learning_rate", defaultValue = "1e-4") double learningRate;
    @Option(names = "--per_device_train_batch_size", defaultValue = "1") int batchSize;
    @Option(names = "--gradient_accumulation_steps", defaultValue = "1") int gradAccum;
    @Option(names = "--save_steps", defaultValue = "500") int saveSteps;
    @Option(names = "--logging_steps", defaultValue = "5") int loggingSteps;
    @Option(names = "--max_length", defaultValue = "2048") int maxLength;
    @Option(names = "--weight_decay", defaultValue = "0.1") double weightDecay;
    @Option(names = "--warmup_ratio", defaultValue = "0.05") double warmupRatio;
    @Option(names = "--max_grad_norm", defaultValue = "1.0") double maxGradNorm;
    @Option(names = "--adam_beta1", defaultValue = "0.9") double beta1;
    @Option(names = "--adam_beta2", defaultValue = "0.95") double beta2;
    @Option(names = "--adam_epsilon", defaultValue = "1e-8") double adamEps;
    @Option(names = "--seed", defaultValue = "42") long seed;
    @Option(names = "--output_dir", defaultValue = "output") Path outputDir;
    @Option(names = "--threads", paramLabel = "N") Integer threads;

    @Override
    public Integer call() throws Exception {
        if (!trainType.equalsIgnoreCase("lora"))
            throw new IllegalArgumentException("--train_type " + trainType + " is not supported yet (lora only)");
        if (!Files.isDirectory(model)) throw new IllegalArgumentException("model folder " + model + " not found");
        if (threads != null) Parallel.setThreads(threads);
        SftTrainer.Config cfg = new SftTrainer.Config(loraRank, loraAlpha, loraDropout, targetModules, epochs, maxSteps, learningRate,
                batchSize, gradAccum, saveSteps, loggingSteps, maxLength, weightDecay, warmupRatio, maxGradNorm, beta1, beta2, adamEps, seed);
        Map<String, Object> args = new LinkedHashMap<>();
        args.put("model", model.toString());
        args.put("dataset", dataset);
        args.put("train_type", "lora");
        args.put("lora_rank", loraRank);
        args.put("lora_alpha", loraAlpha);
        args.put("lora_dropout", loraDropout);
        args.put("target_modules", targetModules);
        args.put("num_train_epochs", epochs);
        args.put("max_steps", maxSteps);
        args.put("learning_rate", learningRate);
        args.put("per_device_train_batch_size", batchSize);
        args.put("gradient_accumulation_steps", gradAccum);
        args.put("save_steps", saveSteps);
        args.put("logging_steps", loggingSteps);
        args.put("max_length", maxLength);
        args.put("weight_decay", weightDecay);
        args.put("warmup_ratio", warmupRatio);
        args.put("max_grad_norm", maxGradNorm);
        args.put("adam_beta1", beta1);
        args.put("adam_beta2", beta2);
        args.put("adam_epsilon", adamEps);
        args.put("lr_scheduler_type", "cosine");
        args.put("seed", seed);
        args.put("output_dir", outputDir.toString());
        SftDataset data = SftDataset.load(dataset);
        try (TrainableModel tm = TrainableModel.load(model)) {
            SftTrainer.Result r = SftTrainer.train(tm, data, cfg, outputDir, args, System.err::println);
            System.err.println("vlm4j sft: last checkpoint " + r.lastCheckpoint());
            System.out.println(r.lastCheckpoint());
        }
        return 0;
    }
}
