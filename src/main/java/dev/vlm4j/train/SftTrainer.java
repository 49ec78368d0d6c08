package dev.vlm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;
import dev.vlm4j.train.autograd.GradBackend;
import dev.vlm4j.train.lora.LoraBackend;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.time.LocalDateTime;
import java.time.format.DateTimeFormatter;
import java.util.*;
import java.util.function.Consumer;

/**
 * Supervised fine-tuning with LoRA, ms-swift style: epochs over the dataset in a seeded shuffled order, micro-batches
 * of {@code batchSize} samples, {@code gradAccum} micro-batches per optimizer step, loss averaged over all answer
 * tokens of the step (transformers' num_items_in_batch), gradient clipping, AdamW with linear warmup then cosine decay.
 * Writes {@code output_dir/vN-YYYYMMDD-HHMMSS/} with args.json, logging.jsonl and {@code checkpoint-N/} PEFT adapters.
 */
public final class SftTrainer {
    /** Training settings (ms-swift names in comments). */
    public record Config(int loraRank, double loraAlpha, float loraDropout, List<String> targetModules, int epochs,
                         int maxSteps, double learningRate, int batchSize, int gradAccum, int saveSteps, int loggingSteps,
                         int maxLength, double weightDecay, double warmupRatio, double maxGradNorm, double beta1,
                         double beta2, double adamEps, long seed) {}

    /** What training produced: its run folder, the last checkpoint and the per-step losses. */
    public record Result(Path runDir, Path lastCheckpoint, List<Double> losses) {}

    private static final ObjectMapper JSON = new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT);
    private static final List<String> ALL_LINEAR = List.of("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
            "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj");

    private SftTrainer() {}

    /** The weights {@code --target_modules} selects: {@code all-linear} = every LM decoder linear (not lm_head, not the ViT). */
    public static List<String> targetWeights(TrainableModel tm, List<String> targetModules) {
        int layers = tm.model().config().text().numLayers();
        List<String> out = new ArrayList<>();
        for (int l = 0; l < layers; l++)
            for (String m : ALL_LINEAR) {
                String leaf = m.substring(m.indexOf('.') + 1);
                if (targetModules.contains("all-linear") || targetModules.contains(leaf) || targetModules.contains(m))
                    out.add("model.layers." + l + "." + m + ".weight");
            }
        if (out.isEmpty()) throw new IllegalArgumentException("--target_modules " + targetModules + " selects no decoder linear");
        return out;
    }

    public static Result train(TrainableModel tm, SftDataset data, Config cfg, Path outputDir, Map<String, Object> args,
                               Consumer<String> log) throws IOException {
        tm.addNewLora(targetWeights(tm, cfg.targetModules()), cfg.loraRank(), cfg.loraAlpha(), cfg.loraDropout(), cfg.seed());
        List<GradBackend.Parameter> params = new ArrayList<>(tm.grad().parameters().values());
        List<SftDataset.Example> examples = new ArrayList<>();
        for (SftDataset.Sample s : data.samples()) {
            SftDataset.Example e = data.encode(tm.vlm(), s);
            if (cfg.maxLength() > 0 && e.ids().length > cfg.maxLength()) {
                log.accept("skipping a sample of " + e.ids().length + " tokens (> --max_length " + cfg.maxLength() + ")");
                continue;
            }
            examples.add(e);
        }
        if (examples.isEmpty()) throw new IllegalArgumentException("no training sample fits --max_length " + cfg.maxLength());
        int perStep = cfg.batchSize() * cfg.gradAccum();
        int stepsPerEpoch = (examples.size() + perStep - 1) / perStep;
        int total = cfg.maxSteps() > 0 ? cfg.maxSteps() : stepsPerEpoch * cfg.epochs();
        int warmup = (int) Math.ceil(cfg.warmupRatio() * total);

        Path runDir = newRunDir(outputDir);
        Map<String, Object> argsOut = new LinkedHashMap<>(args);
        argsOut.put("total_steps", total);
        writeAtomically(runDir.resolve("args.json"), JSON.writeValueAsBytes(argsOut));
        Path logFile = runDir.resolve("logging.jsonl");

        AdamW opt = new AdamW(params, cfg.beta1(), cfg.beta2(), cfg.adamEps(), cfg.weightDecay());
        Random rng = new Random(cfg.seed());
        List<Integer> order = new ArrayList<>();
        List<Double> losses = new ArrayList<>();
        Path lastCkpt = null;
        tm.lora().training(true, cfg.seed());
        int cursor = 0, epoch = 0;
        double logLoss = 0, logNorm = 0;
        int logCount = 0;
        long t0 = System.nanoTime();
        try {
            for (int step = 0; step < total; step++) {
                List<SftDataset.Example> batch = new ArrayList<>();
                for (int i = 0; i < perStep; i++) {
                    if (cursor >= order.size()) {
                        if (!order.isEmpty()) epoch++;
                        order.clear();
                        for (int k = 0; k < examples.size(); k++) order.add(k);
                        Collections.shuffle(order, rng);
                        cursor = 0;
                        if (!batch.isEmpty() && cfg.maxSteps() <= 0) break; // the last step of an epoch may be short
                    }
                    batch.add(examples.get(order.get(cursor++)));
                }
                int tokens = 0;
                for (SftDataset.Example e : batch) tokens += e.lossTokens();
                tm.grad().zeroGrad();
                double loss = 0;
                for (SftDataset.Example e : batch) {
                    if (e.lossTokens() == 0) continue;
                    double w = (double) e.lossTokens() / tokens;
                    loss += w * tm.lossAndBackward(e.ids(), e.labels(), e.images(), e.videos(), w, false).loss();
                }
                double norm = AdamW.clipGradNorm(params, cfg.maxGradNorm());
                double lr = AdamW.cosineWithWarmup(cfg.learningRate(), step, warmup, total);
                opt.step(lr);
                losses.add(loss);
                logLoss += loss;
                logNorm += norm;
                logCount++;
                int done = step + 1;
                if (done % Math.max(1, cfg.loggingSteps()) == 0 || done == total) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("loss", round(logLoss / logCount));
                    row.put("grad_norm", round(logNorm / logCount));
                    row.put("learning_rate", lr);
                    row.put("epoch", round(epoch + (double) cursor / examples.size()));
                    row.put("global_step/max_steps", done + "/" + total);
                    row.put("elapsed_time", String.format("%.1fs", (System.nanoTime() - t0) / 1e9));
                    String line = new ObjectMapper().writeValueAsString(row);
                    Files.writeString(logFile, line + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
                    log.accept(line);
                    logLoss = logNorm = 0;
                    logCount = 0;
                }
                if ((cfg.saveSteps() > 0 && done % cfg.saveSteps() == 0) || done == total) {
                    lastCkpt = runDir.resolve("checkpoint-" + done);
                    saveAdapter(tm, cfg, lastCkpt);
                }
            }
        } finally {
            tm.lora().training(false, cfg.seed());
        }
        return new Result(runDir, lastCkpt, losses);
    }

    private static double round(double x) { return Math.round(x * 1e6) / 1e6; }

    /** {@code output_dir/vN-YYYYMMDD-HHMMSS}, N one more than the highest existing vN. */
    static Path newRunDir(Path outputDir) throws IOException {
        Files.createDirectories(outputDir);
        int next = 0;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(outputDir, "v*-*")) {
            for (Path p : ds) {
                String n = p.getFileName().toString();
                String num = n.substring(1, n.indexOf('-'));
                if (num.matches("\\d+")) next = Math.max(next, Integer.parseInt(num) + 1);
            }
        }
        Path dir = outputDir.resolve("v" + next + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        Files.createDirectories(dir);
        return dir;
    }

    /**
     * Writes a PEFT adapter folder: adapter_model.safetensors with keys
     * {@code base_model.model.model.language_model.layers.N.<module>.lora_A.weight} (transformers 5 / peft layout) and
     * adapter_config.json; both through a temporary file and a rename.
     */
    public static void saveAdapter(TrainableModel tm, Config cfg, Path dir) throws IOException {
        Files.createDirectories(dir);
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (LoraBackend.Target t : tm.lora().targets()) {
            String module = t.module().startsWith("model.layers.") ? "model.language_model." + t.module().substring("model.".length()) : t.module();
            tensors.put(TrainableModel.PEFT_PREFIX + module + ".lora_A.weight", Tensor.of(t.a().toFloatArray(), t.a().shape()));
            tensors.put(TrainableModel.PEFT_PREFIX + module + ".lora_B.weight", Tensor.of(t.b().toFloatArray(), t.b().shape()));
        }
        SafeTensorsWriter.write(dir.resolve("adapter_model.safetensors"), tensors, Map.of("format", "pt"));
        Map<String, Object> ac = new LinkedHashMap<>();
        ac.put("peft_type", "LORA");
        ac.put("task_type", "CAUSAL_LM");
        ac.put("base_model_name_or_path", tm.vlm().directory().toString());
        ac.put("r", cfg.loraRank());
        ac.put("lora_alpha", cfg.loraAlpha());
        ac.put("lora_dropout", cfg.loraDropout());
        ac.put("target_modules", ".*language_model.*\\.(" + String.join("|", cfg.targetModules().contains("all-linear")
                ? List.of("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj") : cfg.targetModules()) + ")$");
        ac.put("bias", "none");
        ac.put("use_rslora", false);
        ac.put("use_dora", false);
        ac.put("fan_in_fan_out", false);
        ac.put("inference_mode", true);
        ac.put("modules_to_save", null);
        writeAtomically(dir.resolve("adapter_config.json"), JSON.writeValueAsBytes(ac));
    }

    static void writeAtomically(Path file, byte[] bytes) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.write(tmp, bytes);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
