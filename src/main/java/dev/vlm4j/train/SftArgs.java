package dev.vlm4j.train;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.databind.DeserializationFeature;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.PropertyNamingStrategies;
import com.fasterxml.jackson.databind.SerializationFeature;

import picocli.CommandLine.Option;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * The settings of an SFT run under ms-swift's names: each field serialises in snake case ({@code perDeviceTrainBatchSize}
 * is {@code per_device_train_batch_size}), which is what {@code args.json} holds and what
 * {@code --load_data_args} reads back. Defaults are ms-swift's.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class SftArgs {
    /** The mapper that reads and writes args.json (snake case, indented). */
    public static final ObjectMapper JSON = new ObjectMapper()
            .setPropertyNamingStrategy(PropertyNamingStrategies.SNAKE_CASE)
            .enable(SerializationFeature.INDENT_OUTPUT)
            .disable(DeserializationFeature.FAIL_ON_UNKNOWN_PROPERTIES);

    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "Base model folder (config.json, *.safetensors, tokenizer, chat template).")
    public String model;
    @Option(names = "--dataset", required = true, split = ",", paramLabel = "PATH[#N]",
            description = "Training JSONL file(s): messages rows or query/response/system/history rows; #N samples N rows (repeating the file when N exceeds its size).")
    public List<String> dataset = new ArrayList<>();
    @Option(names = "--val_dataset", split = ",", paramLabel = "PATH[#N]",
            description = "Validation JSONL file(s); when given, --split_dataset_ratio is not applied.")
    public List<String> valDataset = new ArrayList<>();
    @Option(names = "--split_dataset_ratio", paramLabel = "R",
            description = "Fraction of --dataset held out for validation when no --val_dataset is given (default: ${DEFAULT-VALUE}).")
    public double splitDatasetRatio = 0.0;
    @Option(names = "--strict", arity = "1", paramLabel = "BOOL",
            description = "true: a malformed row fails the run (file and line named); false: such rows are skipped and counted (default: ${DEFAULT-VALUE}).")
    public boolean strict = false;
    @Option(names = {"--train_type", "--tuner_type"}, paramLabel = "TYPE",
            description = "lora (default) or full.")
    public String trainType = "lora";
    @Option(names = "--lora_rank", paramLabel = "R",
            description = "LoRA rank r (default: ${DEFAULT-VALUE}).")
    public int loraRank = 8;
    @Option(names = "--lora_alpha", paramLabel = "A",
            description = "LoRA alpha; the update is scaled by alpha / r (default: ${DEFAULT-VALUE}).")
    public double loraAlpha = 32;
    @Option(names = "--lora_dropout", paramLabel = "P",
            description = "Dropout on the LoRA input while training (default: ${DEFAULT-VALUE}).")
    public float loraDropout = 0.05f;
    @Option(names = "--target_modules", split = ",", paramLabel = "M",
            description = "all-linear (every linear of the unfrozen parts), module names (matched as name suffixes), or one regex (fullmatch) (default: all-linear).")
    public List<String> targetModules = new ArrayList<>(List.of("all-linear"));
    @Option(names = "--exclude_modules", split = ",", paramLabel = "M",
            description = "Modules LoRA leaves alone even when --target_modules selects them: module names (matched as name "
                    + "suffixes) or one regex (fullmatch), PEFT's exclude_modules (default: none).")
    public List<String> excludeModules = new ArrayList<>();
    @Option(names = "--use_rslora", arity = "1", paramLabel = "BOOL",
            description = "Rank-stabilised LoRA: scale alpha / sqrt(r) (default: ${DEFAULT-VALUE}).")
    public boolean useRslora = false;
    @Option(names = "--modules_to_save", split = ",", paramLabel = "M",
            description = "LoRA: modules trained fully (float32) next to the adapter and saved in it, PEFT's modules_to_save "
                    + "(names matched as name suffixes, e.g. lm_head, model.norm, embed_tokens).")
    public List<String> modulesToSave = new ArrayList<>();
    @Option(names = "--freeze_vit", arity = "1", paramLabel = "BOOL",
            description = "Keep the vision blocks frozen (all-linear skips them) (default: ${DEFAULT-VALUE}).")
    public boolean freezeVit = true;
    @Option(names = "--freeze_aligner", arity = "1", paramLabel = "BOOL",
            description = "Keep the merger (projector) frozen (default: ${DEFAULT-VALUE}).")
    public boolean freezeAligner = true;
    @Option(names = "--freeze_llm", arity = "1", paramLabel = "BOOL",
            description = "Keep the language model frozen (default: ${DEFAULT-VALUE}).")
    public boolean freezeLlm = false;
    @Option(names = "--num_train_epochs", paramLabel = "N",
            description = "Epochs over the training set (default: ${DEFAULT-VALUE}).")
    public int numTrainEpochs = 1;
    @Option(names = "--max_steps", paramLabel = "N",
            description = "Optimizer steps to run; overrides --num_train_epochs when positive (default: ${DEFAULT-VALUE}).")
    public int maxSteps = -1;
    @Option(names = "--learning_rate", paramLabel = "LR",
            description = "Peak learning rate (default: 1e-4 for lora, 1e-5 for full).")
    /** Peak learning rate; null: 1e-4 for LoRA, 1e-5 for full fine-tuning (set by {@link #validate}). */
    public Double learningRate;
    @Option(names = "--per_device_train_batch_size", paramLabel = "N",
            description = "Samples per micro-batch (default: ${DEFAULT-VALUE}).")
    public int perDeviceTrainBatchSize = 1;
    @Option(names = "--gradient_accumulation_steps", paramLabel = "N",
            description = "Micro-batches per optimizer step (default: ${DEFAULT-VALUE}).")
    public int gradientAccumulationSteps = 1;
    @Option(names = "--padding_free", arity = "1", paramLabel = "BOOL",
            description = "Pack each micro-batch's samples into one sequence without padding: one forward per micro-batch, "
                    + "positions and attention kept within each sample (also in the vision tower); same loss and gradients as "
                    + "one sample at a time, up to float rounding (LoRA dropout masks are drawn over the packed rows, so they differ) "
                    + "(default: ${DEFAULT-VALUE}, as ms-swift).")
    public boolean paddingFree = false;
    /** Recompute each decoder layer and ViT block in the backward instead of keeping its activations (ms-swift's default: true). */
    @Option(names = "--gradient_checkpointing", arity = "1", paramLabel = "BOOL",
            description = "Keep only each decoder layer's and ViT block's input and recompute the layer in the backward: "
                    + "activation memory of one layer instead of all, for about one more forward per step; "
                    + "same gradients (default: ${DEFAULT-VALUE}, as ms-swift).")
    public boolean gradientCheckpointing = true;
    /** What gradient checkpointing recomputes: whole layers (as ms-swift) or only the decoder layers' MLP halves. */
    @Option(names = "--gradient_checkpointing_scope", paramLabel = "layer|mlp",
            description = "With --gradient_checkpointing: recompute whole decoder layers and ViT blocks (layer), or only "
                    + "the decoder layers' MLP halves and the ViT blocks (mlp: the attention halves keep their activations, "
                    + "about 0.15 GB a layer more at 2k tokens of a 7B model, for less recomputation) "
                    + "(default: ${DEFAULT-VALUE}).")
    public String gradientCheckpointingScope = "layer";
    @Option(names = "--save_steps", paramLabel = "N",
            description = "Write checkpoint-N every N steps (and at the end) (default: ${DEFAULT-VALUE}).")
    public int saveSteps = 500;
    /** Evaluation interval in optimizer steps; null: {@link #saveSteps}. */
    @Option(names = "--eval_steps", paramLabel = "N",
            description = "Compute eval_loss on the validation set every N steps (default: --save_steps).")
    public Integer evalSteps;
    /** How many checkpoints to keep (the best and the newest are always kept); null: all. */
    @Option(names = "--save_total_limit", paramLabel = "N",
            description = "Keep at most N checkpoints; the best (lowest eval or train loss) and the last are always kept (default: all).")
    public Integer saveTotalLimit;
    @Option(names = "--logging_steps", paramLabel = "N",
            description = "Write a logging.jsonl row every N steps (default: ${DEFAULT-VALUE}).")
    public int loggingSteps = 5;
    @Option(names = "--max_length", paramLabel = "N",
            description = "Longest sample in tokens (vision tokens included) (default: ${DEFAULT-VALUE}).")
    public int maxLength = 2048;
    /** {@code delete} (drop longer samples), {@code left} (drop leading tokens) or {@code right} (drop trailing ones). */
    @Option(names = "--truncation_strategy", paramLabel = "S",
            description = "For samples over --max_length: delete (skip them), left (drop leading tokens) or right (drop trailing tokens) (default: ${DEFAULT-VALUE}).")
    public String truncationStrategy = "delete";
    @Option(names = "--weight_decay", paramLabel = "W",
            description = "AdamW decoupled weight decay (default: ${DEFAULT-VALUE}).")
    public double weightDecay = 0.1;
    @Option(names = "--warmup_ratio", paramLabel = "R",
            description = "Fraction of the steps with linear warmup (default: ${DEFAULT-VALUE}).")
    public double warmupRatio = 0.05;
    @Option(names = "--max_grad_norm", paramLabel = "X",
            description = "Clip the global gradient L2 norm to this (default: ${DEFAULT-VALUE}).")
    public double maxGradNorm = 1.0;
    @Option(names = "--adam_beta1", paramLabel = "B",
            description = "AdamW beta1 (default: ${DEFAULT-VALUE}).")
    public double adamBeta1 = 0.9;
    @Option(names = "--adam_beta2", paramLabel = "B",
            description = "AdamW beta2 (default: ${DEFAULT-VALUE}).")
    public double adamBeta2 = 0.95;
    @Option(names = "--adam_epsilon", paramLabel = "E",
            description = "AdamW epsilon (default: ${DEFAULT-VALUE}).")
    public double adamEpsilon = 1e-8;
    @Option(names = "--lr_scheduler_type", paramLabel = "S",
            description = "Learning-rate schedule: cosine (warmup then cosine decay to 0).")
    public String lrSchedulerType = "cosine";
    @Option(names = "--seed", paramLabel = "N",
            description = "Seed of LoRA initialisation, data order and dropout (default: ${DEFAULT-VALUE}).")
    public long seed = 42;
    /** Seed of dataset sampling ({@code #N}) and of the train/validation split. */
    @Option(names = "--data_seed", paramLabel = "N",
            description = "Seed of #N sampling and of the validation split (default: ${DEFAULT-VALUE}).")
    public long dataSeed = 42;
    @Option(names = "--output_dir", paramLabel = "DIR",
            description = "Runs go to DIR/vN-YYYYMMDD-HHMMSS/ (default: ${DEFAULT-VALUE}).")
    public String outputDir = "output";
    /** A {@code checkpoint-N} folder to continue from exactly (weights, optimizer, scheduler, RNG, data position). */
    @Option(names = "--resume_from_checkpoint", paramLabel = "CKPT",
            description = "Continue exactly from a checkpoint-N folder (weights, optimizer, scheduler, RNG, data position), in its run folder.")
    public String resumeFromCheckpoint;
    /** Where the training runs: cpu or cuda[:N] (LoRA only on CUDA). */
    @Option(names = "--device", paramLabel = "DEV",
            description = "cpu or cuda[:N] (default: ${DEFAULT-VALUE}). On CUDA, LoRA training with the base frozen in --torch_dtype.")
    public String device = "cpu";
    /** ms-swift's --torch_dtype: the precision of the frozen weights on CUDA (the CPU computes with the weights as stored). */
    @Option(names = "--torch_dtype", paramLabel = "DTYPE",
            description = "bfloat16 or float32: frozen weights and products on CUDA (default: ${DEFAULT-VALUE}); the CPU uses the weights as stored.")
    public String torchDtype = "bfloat16";
    /** No progress bar even on a terminal (transformers' name). */
    @Option(names = "--disable_tqdm", arity = "1", paramLabel = "BOOL",
            description = "No progress bar even on a terminal (default: ${DEFAULT-VALUE}).")
    public boolean disableTqdm = false;

    /** Whether this is full fine-tuning. */
    @com.fasterxml.jackson.annotation.JsonIgnore
    public boolean isFull() { return "full".equalsIgnoreCase(trainType); }

    /** The evaluation interval actually used. */
    public int evalInterval() { return evalSteps != null && evalSteps > 0 ? evalSteps : saveSteps; }

    /** The LoRA scale: {@code alpha / r}, or {@code alpha / sqrt(r)} with rslora. */
    public double loraScale() { return useRslora ? loraAlpha / Math.sqrt(loraRank) : loraAlpha / loraRank; }

    /** Reads an args.json (unknown keys, such as ms-swift's many others, are ignored). */
    public static SftArgs read(Path file) {
        try {
            return JSON.readValue(Files.readAllBytes(file), SftArgs.class);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage());
        }
    }

    /** The args.json of a checkpoint: {@code CKPT/args.json}, else {@code CKPT/../args.json}; null when neither exists. */
    public static Path argsFileOf(Path ckpt) {
        Path own = ckpt.resolve("args.json"), run = ckpt.toAbsolutePath().normalize().getParent().resolve("args.json");
        if (Files.isRegularFile(own)) return own;
        return Files.isRegularFile(run) ? run : null;
    }

    /** The args.json bytes. */
    public byte[] toJson() throws IOException { return JSON.writeValueAsBytes(this); }

    /** Checks the values that have a closed set or a range; throws with the option's name. */
    public void validate() {
        if (!List.of("delete", "left", "right").contains(truncationStrategy))
            throw new IllegalArgumentException("--truncation_strategy " + truncationStrategy + ": expected delete, left or right");
        if (!List.of("lora", "full").contains(trainType.toLowerCase()))
            throw new IllegalArgumentException("--train_type " + trainType + ": expected lora or full");
        if (splitDatasetRatio < 0 || splitDatasetRatio >= 1)
            throw new IllegalArgumentException("--split_dataset_ratio " + splitDatasetRatio + ": expected 0 <= ratio < 1");
        if (loraRank <= 0) throw new IllegalArgumentException("--lora_rank " + loraRank + ": must be positive");
        TrainableModel.recomputedSegments(gradientCheckpointingScope);   // fails on an unknown scope
        if (loraDropout < 0 || loraDropout >= 1) throw new IllegalArgumentException("--lora_dropout " + loraDropout + ": expected [0, 1)");
        if (perDeviceTrainBatchSize <= 0 || gradientAccumulationSteps <= 0)
            throw new IllegalArgumentException("batch size and gradient accumulation steps must be positive");
        if (modulesToSave == null) modulesToSave = new ArrayList<>();
        if (isFull() && !modulesToSave.isEmpty()) throw new IllegalArgumentException("--modules_to_save applies to LoRA (full fine-tuning trains every module)");
        if (learningRate == null) learningRate = isFull() ? 1e-5 : 1e-4;
        if (!lrSchedulerType.equals("cosine")) throw new IllegalArgumentException("--lr_scheduler_type " + lrSchedulerType + ": only cosine is supported");
    }
}
