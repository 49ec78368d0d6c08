package dev.vlm4j.train;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.core.type.TypeReference;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;

import java.io.IOException;
import java.nio.file.*;
import java.util.*;
import java.util.stream.Stream;

/**
 * Everything besides the weights that an exact resume needs, saved as {@code trainer_state.json} in each
 * {@code checkpoint-N/} (names after transformers' Trainer where it has them), next to {@code optimizer.safetensors}
 * (AdamW's {@code exp_avg} / {@code exp_avg_sq} per parameter, float32, the step count in the metadata).
 * <p>
 * The data order and the dropout masks are functions of the seed and the global step (epoch {@code e} is shuffled
 * with {@code Random(seed + e)}, step {@code s}'s dropout masks come from {@link SftTrainer#stepSeed}), so the step,
 * the seed and the position recorded here restore them; the scheduler is a function of the step too.
 */
@JsonIgnoreProperties(ignoreUnknown = true)
public final class TrainerState {
    public int globalStep;
    public int maxSteps;
    public double epoch;
    public int stepsPerEpoch;
    public int numTrainSamples;
    /** Where the next step's data starts: {@code epoch_index} (whose order is {@code Random(seed + epoch_index)}) and batch. */
    public Map<String, Object> dataPosition = new LinkedHashMap<>();
    /** The RNG seeds: {@code seed}, and how the per-step dropout seed derives from it. */
    public Map<String, Object> rng = new LinkedHashMap<>();
    /** {@code type}, {@code warmup_steps}, {@code total_steps}, {@code last_epoch} (steps taken), {@code last_lr}. */
    public Map<String, Object> lrScheduler = new LinkedHashMap<>();
    /** The partial sums of the logging window not yet written (loss, grad_norm, step count). */
    public double logLossSum, logGradNormSum;
    public int logCount;
    public double elapsedSeconds;
    public Double bestMetric;
    public String bestModelCheckpoint;
    /** Every row written to logging.jsonl so far. */
    public List<Map<String, Object>> logHistory = new ArrayList<>();

    static final String STATE = "trainer_state.json", OPTIMIZER = "optimizer.safetensors";

    /** Writes the state and the optimizer moments into {@code dir} (each through a temporary file and a rename). */
    public void save(Path dir, AdamW opt) throws IOException {
        SafeTensorsWriter.write(dir.resolve(OPTIMIZER), opt.state(), Map.of("format", "pt", "step", Integer.toString(opt.steps())));
        SftTrainer.writeAtomically(dir.resolve(STATE), SftArgs.JSON.writeValueAsBytes(this));
    }

    /** Reads {@code checkpoint-N/trainer_state.json}; fails naming what is missing. */
    public static TrainerState load(Path ckpt) {
        Path f = ckpt.resolve(STATE);
        if (!Files.isRegularFile(f))
            throw new IllegalArgumentException("--resume_from_checkpoint " + ckpt + " has no " + STATE + " (not a checkpoint of a vlm4j run?)");
        try {
            return SftArgs.JSON.readValue(Files.readAllBytes(f), TrainerState.class);
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + f + ": " + e.getMessage());
        }
    }

    /**
     * Restores the optimizer moments of a checkpoint into a freshly set up run, and its LoRA factors (for full
     * fine-tuning the master weights were already read from the checkpoint when the model was loaded).
     */
    public static void restoreWeights(Path ckpt, TrainableModel tm, AdamW opt, boolean full) {
        Path optFile = ckpt.resolve(OPTIMIZER);
        if (!Files.isRegularFile(optFile)) throw new IllegalArgumentException("--resume_from_checkpoint " + ckpt + " has no " + OPTIMIZER);
        if (!full) tm.loadLoraWeights(LoraAdapter.load(ckpt));
        try (SafeTensorsFile f = SafeTensorsFile.open(optFile)) {
            Map<String, Tensor> st = new LinkedHashMap<>();
            for (String n : f.names()) st.put(n, Tensor.of(f.get(n).toFloatArray(), f.get(n).shape()));
            String step = f.metadata().get("step");
            if (step == null) throw new IllegalArgumentException(optFile + " has no step in its metadata");
            opt.loadState(st, Integer.parseInt(step));
        }
    }

    /** Rows of {@code logging.jsonl} as maps (for plots and tests). */
    public static List<Map<String, Object>> readLog(Path loggingJsonl) throws IOException {
        List<Map<String, Object>> out = new ArrayList<>();
        for (String l : Files.readAllLines(loggingJsonl))
            if (!l.isBlank()) out.add(SftArgs.JSON.readValue(l, new TypeReference<Map<String, Object>>() {}));
        return out;
    }

    /** The {@code checkpoint-N} folders of a run, by step. */
    public static List<Path> checkpoints(Path runDir) throws IOException {
        try (Stream<Path> s = Files.list(runDir)) {
            return s.filter(p -> Files.isDirectory(p) && p.getFileName().toString().matches("checkpoint-\\d+"))
                    .sorted(Comparator.comparingInt(TrainerState::stepOf)).toList();
        }
    }

    static int stepOf(Path ckpt) { return Integer.parseInt(ckpt.getFileName().toString().substring("checkpoint-".length())); }

    /**
     * {@code save_total_limit} as transformers' Trainer applies it: keep the newest {@code limit} checkpoints, but move
     * the best one to the second-newest place first so it always survives (a limit of 1 keeps 2 when the best is not
     * the newest). Returns the deleted folders.
     */
    public static List<Path> rotate(Path runDir, Integer limit, String best) throws IOException {
        if (limit == null || limit <= 0) return List.of();
        List<Path> cks = new ArrayList<>(checkpoints(runDir));
        int bi = -1;
        for (int i = 0; i < cks.size(); i++) if (best != null && cks.get(i).getFileName().toString().equals(Path.of(best).getFileName().toString())) bi = i;
        int keep = limit;
        if (bi >= 0) {
            for (int i = bi; i < cks.size() - 2; i++) Collections.swap(cks, i, i + 1);
            if (limit == 1 && bi != cks.size() - 1) keep = 2;
        }
        List<Path> deleted = new ArrayList<>();
        for (int i = 0; i < cks.size() - keep; i++) {
            deleteTree(cks.get(i));
            deleted.add(cks.get(i));
        }
        return deleted;
    }

    static void deleteTree(Path p) throws IOException {
        if (!Files.exists(p)) return;
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.delete(q);
        }
    }
}
