package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import com.fasterxml.jackson.databind.ObjectMapper;
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
 * Supervised fine-tuning with LoRA, ms-swift style: epochs over the dataset (epoch {@code e} in the order of a
 * {@code Random(seed + e)} shuffle), {@code per_device_train_batch_size * gradient_accumulation_steps} samples per
 * optimizer step (the last step of an epoch may be short), loss averaged over all trained tokens of the step
 * (transformers' num_items_in_batch), gradient clipping, AdamW with linear warmup then cosine decay, evaluation loss
 * on a validation set every {@code eval_steps}.
 * <p>
 * Writes {@code output_dir/vN-YYYYMMDD-HHMMSS/} with args.json, logging.jsonl, images/ and {@code checkpoint-N/}
 * (PEFT adapter, args.json, {@link TrainerState trainer_state.json and optimizer.safetensors}). A run resumed from a
 * checkpoint continues in that checkpoint's run folder and reproduces the uninterrupted run's losses.
 */
public final class SftTrainer {
    /** What training produced: its run folder, the last and best checkpoints and the losses of the steps run here. */
    public record Result(Path runDir, Path lastCheckpoint, Path bestCheckpoint, List<Double> losses) {}

    private static final ObjectMapper LINE = new ObjectMapper();

    private SftTrainer() {}

    /** The seed of step {@code step}'s dropout masks (a SplitMix64 mix of the run seed and the step). */
    public static long stepSeed(long seed, int step) {
        long z = seed + 0x9E3779B97F4A7C15L * (step + 1L);
        z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
        z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
        return z ^ (z >>> 31);
    }

    /**
     * Loads the model a run trains: for LoRA the base as is; for full fine-tuning with float32 master copies of the
     * weights the freeze flags leave trainable, read from {@code --resume_from_checkpoint} when resuming.
     */
    public static TrainableModel loadModel(SftArgs a) {
        Path dir = Path.of(a.model);
        if (!dev.vlm4j.tensor.Device.parse(a.device).isCpu()) {
            if (a.isFull()) throw new IllegalArgumentException("--device " + a.device + ": full fine-tuning runs on the CPU only (use --train_type lora or --device cpu)");
            if (a.modulesToSave != null && !a.modulesToSave.isEmpty())
                throw new IllegalArgumentException("--device " + a.device + ": --modules_to_save runs on the CPU only (use --device cpu)");
            String quant = switch (a.torchDtype.toLowerCase(java.util.Locale.ROOT)) {
                case "bfloat16", "bf16" -> "bf16";
                case "float32", "fp32", "f32" -> "f32";
                default -> throw new IllegalArgumentException("--torch_dtype " + a.torchDtype + " is not available on CUDA (bfloat16 or float32)");
            };
            return TrainableModel.load(dir, dev.vlm4j.compute.Backends.create(a.device, quant, 0));
        }
        if (!a.isFull()) return TrainableModel.loadWithModulesToSave(dir, a.modulesToSave);
        Path from = a.resumeFromCheckpoint == null ? null : Path.of(a.resumeFromCheckpoint);
        return TrainableModel.loadForFullTraining(dir, n -> LoraTargets.trainable(n, a), from);
    }

    /**
     * padding_free: each micro-batch of {@code micro} samples packed into one sequence, one forward and backward per
     * micro-batch, its mean loss weighted by its share of the step's loss tokens. Returns the step's loss.
     */
    static double packedSteps(TrainableModel tm, List<SftDataset.Example> batch, int micro, int tokens) {
        double loss = 0;
        for (int m = 0; m < batch.size(); m += micro) {
            List<SftDataset.Example> part = batch.subList(m, Math.min(batch.size(), m + micro));
            int partTokens = 0;
            for (SftDataset.Example e : part) partTokens += e.lossTokens();
            if (partTokens == 0) continue;
            double w = (double) partTokens / tokens;
            loss += w * tm.lossAndBackwardPacked(part.stream().map(SftDataset.Example::ids).toList(),
                    part.stream().map(SftDataset.Example::labels).toList(), part.stream().map(SftDataset.Example::images).toList(),
                    part.stream().map(SftDataset.Example::videos).toList(), w);
        }
        return loss;
    }

    /** Trains to the end. */
    public static Result train(TrainableModel tm, SftArgs a, SftDataset trainSet, SftDataset valSet, Consumer<String> log) throws IOException {
        return train(tm, a, trainSet, valSet, log, Integer.MAX_VALUE);
    }

    /** Trains, stopping after global step {@code stopAfter} as if interrupted there (for resume tests). */
    static Result train(TrainableModel tm, SftArgs a, SftDataset trainSet, SftDataset valSet, Consumer<String> log, int stopAfter) throws IOException {
        a.validate();
        boolean full = a.isFull();
        List<String> targets;
        if (full) {
            if (tm.masters().isEmpty())
                throw new IllegalArgumentException("--train_type full needs a model loaded with float32 master weights (SftTrainer.loadModel)");
            targets = new ArrayList<>(tm.masters().keySet());
            log.accept("full fine-tuning of " + targets.size() + " tensors (" + tm.grad().parameters().values().stream()
                    .mapToLong(p -> p.tensor().numel()).sum() + " parameters)");
        } else {
            targets = LoraTargets.select(tm.model().parameters(), a);
            List<String> want = a.modulesToSave == null || a.modulesToSave.isEmpty() ? List.of()
                    : LoraTargets.modulesToSave(tm.model().parameters().keySet(), a.modulesToSave);
            if (!new HashSet<>(want).equals(tm.savedModules().keySet()))
                throw new IllegalArgumentException("--modules_to_save " + a.modulesToSave + " needs a model loaded with float32 copies of "
                        + want + " (SftTrainer.loadModel); this one has " + tm.savedModules().keySet());
            for (String w : want)
                if (targets.contains(w)) throw new IllegalArgumentException(w + " is both a LoRA target and in --modules_to_save");
            tm.addNewLora(targets, a.loraRank, a.loraScale(), a.loraDropout, a.seed);
        }
        tm.grad().checkpointing(a.gradientCheckpointing ? TrainableModel.recomputedSegments(a.gradientCheckpointingScope) : null);
        tm.grad().resetPeakSavedActivationBytes();
        List<Parameter> params = new ArrayList<>(tm.grad().parameters().values());
        List<SftDataset.Example> examples = trainSet.encodeAll(tm.vlm(), a.maxLength, a.truncationStrategy, a.strict, log);
        if (examples.isEmpty()) throw new IllegalArgumentException("no training sample is left (see the skipped samples above)");
        List<SftDataset.Example> valExamples = valSet == null ? List.of() : valSet.encodeAll(tm.vlm(), a.maxLength, a.truncationStrategy, a.strict, log);
        int n = examples.size(), perStep = a.perDeviceTrainBatchSize * a.gradientAccumulationSteps;
        int stepsPerEpoch = (n + perStep - 1) / perStep;
        int total = a.maxSteps > 0 ? a.maxSteps : stepsPerEpoch * a.numTrainEpochs;
        int warmup = (int) Math.ceil(a.warmupRatio * total);
        AdamW opt = new AdamW(params, a.adamBeta1, a.adamBeta2, a.adamEpsilon, a.weightDecay);

        TrainerState st;
        Path runDir;
        if (a.resumeFromCheckpoint != null) {
            Path ck = Path.of(a.resumeFromCheckpoint).toAbsolutePath().normalize();
            st = TrainerState.load(ck);
            if (st.maxSteps != total || st.numTrainSamples != n || st.stepsPerEpoch != stepsPerEpoch)
                throw new IllegalArgumentException("--resume_from_checkpoint " + ck + " was written by a run of " + st.maxSteps + " steps over "
                        + st.numTrainSamples + " samples (" + st.stepsPerEpoch + " steps/epoch); this run has " + total + " steps over " + n
                        + " samples (" + stepsPerEpoch + " steps/epoch): pass the same dataset and step settings");
            TrainerState.restoreWeights(ck, tm, opt, full);
            runDir = ck.getParent();
            StringBuilder sb = new StringBuilder();
            for (var row : st.logHistory) sb.append(LINE.writeValueAsString(row)).append('\n');
            writeAtomically(runDir.resolve("logging.jsonl"), sb.toString().getBytes(StandardCharsets.UTF_8));
            log.accept("resuming from " + ck + " at step " + st.globalStep + "/" + total);
        } else {
            st = new TrainerState();
            st.maxSteps = total;
            st.numTrainSamples = n;
            st.stepsPerEpoch = stepsPerEpoch;
            runDir = newRunDir(Path.of(a.outputDir));
        }
        writeAtomically(runDir.resolve("args.json"), a.toJson());
        Path logFile = runDir.resolve("logging.jsonl");
        int evalEvery = a.evalInterval();

        List<Double> losses = new ArrayList<>();
        Path lastCkpt = null;
        long t0 = System.nanoTime();
        double elapsedBefore = st.elapsedSeconds;
        int startStep = st.globalStep;
        TrainProgress progress = TrainProgress.open(a, total, startStep);
        try {
            for (int step = startStep; step < total && step < stopAfter; step++) {
                int ep = step / stepsPerEpoch, b = step % stepsPerEpoch;
                List<Integer> order = epochOrder(n, a.seed, ep);
                List<SftDataset.Example> batch = new ArrayList<>();
                for (int i = b * perStep; i < Math.min(n, (b + 1) * perStep); i++) batch.add(examples.get(order.get(i)));
                int tokens = 0;
                for (SftDataset.Example e : batch) tokens += e.lossTokens();
                tm.lora().training(true, stepSeed(a.seed, step));
                tm.grad().zeroGrad();
                double loss = a.paddingFree ? packedSteps(tm, batch, a.perDeviceTrainBatchSize, tokens) : 0;
                if (!a.paddingFree)
                    for (SftDataset.Example e : batch) {
                        if (e.lossTokens() == 0) continue;
                        double w = (double) e.lossTokens() / tokens;
                        loss += w * tm.lossAndBackward(e.ids(), e.labels(), e.images(), e.videos(), w, false).loss();
                    }
                tm.lora().training(false, 0);
                double norm = AdamW.clipGradNorm(params, a.maxGradNorm);
                double lr = AdamW.cosineWithWarmup(a.learningRate, step, warmup, total);
                opt.step(lr);
                losses.add(loss);
                st.logLossSum += loss;
                st.logGradNormSum += norm;
                st.logCount++;
                int done = step + 1;
                st.globalStep = done;
                st.epoch = round((double) done / stepsPerEpoch);
                st.elapsedSeconds = elapsedBefore + (System.nanoTime() - t0) / 1e9;
                double speed = (done - startStep) / Math.max(1e-9, (System.nanoTime() - t0) / 1e9);
                if (done % Math.max(1, a.loggingSteps) == 0 || done == total) {
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("loss", round(st.logLossSum / st.logCount));
                    row.put("grad_norm", round(st.logGradNormSum / st.logCount));
                    row.put("learning_rate", lr);
                    row.put("epoch", st.epoch);
                    putProgress(row, done, total, st.elapsedSeconds, speed, tm.grad().peakDeviceBytes());
                    emit(row, st, logFile, log, progress);
                    st.logLossSum = st.logGradNormSum = 0;
                    st.logCount = 0;
                }
                Double evalLoss = null;
                if (!valExamples.isEmpty() && evalEvery > 0 && (done % evalEvery == 0 || done == total)) {
                    long e0 = System.nanoTime();
                    evalLoss = evaluate(tm, valExamples);
                    Map<String, Object> row = new LinkedHashMap<>();
                    row.put("eval_loss", round(evalLoss));
                    row.put("eval_runtime", round((System.nanoTime() - e0) / 1e9));
                    row.put("epoch", st.epoch);
                    putProgress(row, done, total, st.elapsedSeconds, speed, tm.grad().peakDeviceBytes());
                    emit(row, st, logFile, log, progress);
                }
                progress.step(done, loss);
                if ((a.saveSteps > 0 && done % a.saveSteps == 0) || done == total) {
                    double metric = evalLoss != null ? evalLoss : loss;
                    lastCkpt = runDir.resolve("checkpoint-" + done);
                    if (st.bestMetric == null || metric < st.bestMetric) {
                        st.bestMetric = metric;
                        st.bestModelCheckpoint = lastCkpt.toString();
                    }
                    int nextEp = done / stepsPerEpoch, nextB = done % stepsPerEpoch;
                    st.dataPosition = new LinkedHashMap<>(Map.of("epoch_index", nextEp, "batch_in_epoch", nextB,
                            "samples_seen_in_epoch", Math.min(n, nextB * perStep), "order", "Random(seed + epoch_index) shuffle"));
                    st.rng = new LinkedHashMap<>(Map.of("seed", a.seed, "dropout_seed_of_step", "SplitMix64(seed, global_step)"));
                    st.lrScheduler = new LinkedHashMap<>(Map.of("type", "cosine", "warmup_steps", warmup, "total_steps", total,
                            "last_epoch", done, "last_lr", lr));
                    saveCheckpoint(tm, a, targets, st, opt, lastCkpt);
                    for (Path d : TrainerState.rotate(runDir, a.saveTotalLimit, st.bestModelCheckpoint)) log.accept("deleted " + d.getFileName() + " (save_total_limit " + a.saveTotalLimit + ")");
                }
            }
        } finally {
            progress.close();
            tm.lora().training(false, a.seed);
        }
        log.accept(String.format(Locale.ROOT, "activations saved for the backward: at most %.1f MiB (gradient_checkpointing %s)",
                tm.grad().peakSavedActivationBytes() / (double) (1 << 20), a.gradientCheckpointing));
        TrainingPlots.write(runDir, st.logHistory, log);
        Path best = st.bestModelCheckpoint == null ? null : Path.of(st.bestModelCheckpoint);
        return new Result(runDir, lastCkpt, best, losses);
    }

    /** The sample order of epoch {@code epoch}: a {@code Random(seed + epoch)} shuffle of {@code 0..n-1}. */
    static List<Integer> epochOrder(int n, long seed, int epoch) {
        List<Integer> order = new ArrayList<>(n);
        for (int k = 0; k < n; k++) order.add(k);
        Collections.shuffle(order, new Random(seed + epoch));
        return order;
    }

    /** Token-weighted mean loss over the examples, forward only, dropout off. */
    public static double evaluate(TrainableModel tm, List<SftDataset.Example> examples) {
        double sum = 0;
        long tokens = 0;
        for (SftDataset.Example e : examples) {
            int t = e.lossTokens();
            if (t == 0) continue;
            sum += t * tm.loss(e.ids(), e.labels(), e.images(), e.videos());
            tokens += t;
        }
        return tokens == 0 ? Double.NaN : sum / tokens;
    }

    /**
     * ms-swift's progress keys; {@code memory(GiB)} is the device's peak memory in use when training on a GPU (as
     * ms-swift reports for CUDA), else the JVM heap in use.
     */
    private static void putProgress(Map<String, Object> row, int done, int total, double elapsed, double speed, long deviceBytes) {
        row.put("global_step/max_steps", done + "/" + total);
        row.put("percentage", String.format(Locale.ROOT, "%.2f%%", 100.0 * done / total));
        row.put("elapsed_time", formatTime(elapsed));
        row.put("remaining_time", formatTime((total - done) / Math.max(1e-9, speed)));
        Runtime rt = Runtime.getRuntime();
        long bytes = deviceBytes >= 0 ? deviceBytes : rt.totalMemory() - rt.freeMemory();
        row.put("memory(GiB)", Math.round(bytes / (double) (1L << 30) * 100) / 100.0);
        row.put("train_speed(iter/s)", round(speed));
    }

    private static void emit(Map<String, Object> row, TrainerState st, Path logFile, Consumer<String> log, TrainProgress progress) throws IOException {
        String line = LINE.writeValueAsString(row);
        Files.writeString(logFile, line + "\n", StandardCharsets.UTF_8, StandardOpenOption.CREATE, StandardOpenOption.APPEND);
        st.logHistory.add(row);
        if (progress.active()) progress.message(line);
        else log.accept(line);
    }

    /** ms-swift's time format: {@code 45s}, {@code 3m 5s}, {@code 1h 2m 3s}. */
    static String formatTime(double seconds) {
        long s = Math.round(seconds);
        if (s < 60) return s + "s";
        if (s < 3600) return (s / 60) + "m " + (s % 60) + "s";
        return (s / 3600) + "h " + (s % 3600 / 60) + "m " + (s % 60) + "s";
    }

    private static double round(double x) { return Math.round(x * 1e8) / 1e8; }

    /** {@code output_dir/vN-YYYYMMDD-HHMMSS}, N one more than the highest existing vN. */
    static Path newRunDir(Path outputDir) throws IOException {
        Files.createDirectories(outputDir);
        int next = 0;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(outputDir, "v*-*")) {
            for (Path p : ds) {
                String nm = p.getFileName().toString();
                String num = nm.substring(1, nm.indexOf('-'));
                if (num.matches("\\d+")) next = Math.max(next, Integer.parseInt(num) + 1);
            }
        }
        Path dir = outputDir.toAbsolutePath().resolve("v" + next + "-" + LocalDateTime.now().format(DateTimeFormatter.ofPattern("yyyyMMdd-HHmmss")));
        Files.createDirectories(dir);
        return dir;
    }

    /**
     * Writes {@code checkpoint-N/} as a whole: its files go into a hidden temporary folder (each written through a
     * temporary file and a rename), which is then renamed into place, replacing an older folder of that name.
     */
    static void saveCheckpoint(TrainableModel tm, SftArgs a, List<String> targets, TrainerState st, AdamW opt, Path dir) throws IOException {
        Path tmp = dir.resolveSibling("." + dir.getFileName() + ".tmp");
        TrainerState.deleteTree(tmp);
        Files.createDirectories(tmp);
        if (a.isFull()) saveFull(tm, tmp);
        else saveAdapter(tm, a, targets, tmp);
        writeAtomically(tmp.resolve("args.json"), a.toJson());
        st.save(tmp, opt);
        TrainerState.deleteTree(dir);
        Files.move(tmp, dir, StandardCopyOption.ATOMIC_MOVE);
    }

    /**
     * Full fine-tuning's checkpoint: a model folder in the published layout (the base's config, tokenizer and template
     * files, safetensors shards with {@code model.safetensors.index.json}); trained tensors are written as their
     * float32 master weights (exact resume; loaders cast to the config's dtype), frozen ones as the base's bf16 bytes.
     */
    static void saveFull(TrainableModel tm, Path dir) throws IOException {
        dev.vlm4j.tensor.safetensors.Checkpoint ck = tm.model().checkpoint();
        dev.vlm4j.model.adapter.MergeExporter.copyNonWeightFiles(tm.vlm().directory(), dir);
        Map<String, Tensor> all = new LinkedHashMap<>();
        for (String n : ck.names()) all.put(n, tm.masters().containsKey(n) ? tm.masters().get(n) : ck.get(n));
        dev.vlm4j.model.adapter.MergeExporter.writeShards(dir, all, dev.vlm4j.model.adapter.MergeExporter.DEFAULT_SHARD_BYTES);
    }

    /**
     * Writes a PEFT adapter folder: adapter_model.safetensors with keys {@code base_model.model.<module>.lora_A.weight}
     * in the transformers 5 naming ({@code model.language_model.layers.N...}, {@code model.visual...}), the
     * modules_to_save tensors as {@code base_model.model.<module>.weight} (float32) and
     * adapter_config.json in PEFT's format; both through a temporary file and a rename.
     */
    public static void saveAdapter(TrainableModel tm, SftArgs a, List<String> targets, Path dir) throws IOException {
        Files.createDirectories(dir);
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        for (LoraBackend.Target t : tm.lora().targets()) {
            String module = LoraTargets.newStyleName(t.module());
            tensors.put(TrainableModel.PEFT_PREFIX + module + ".lora_A.weight", Tensor.of(tm.grad().toHost(t.a()), t.a().shape()));
            tensors.put(TrainableModel.PEFT_PREFIX + module + ".lora_B.weight", Tensor.of(tm.grad().toHost(t.b()), t.b().shape()));
        }
        // modules_to_save: PEFT's get_peft_model_state_dict key, base_model.model.<module>.<param> (no adapter name).
        for (var e : tm.savedModules().entrySet())
            tensors.put(TrainableModel.savedParameterName(e.getKey()), Tensor.of(e.getValue().toFloatArray(), e.getValue().shape()));
        SafeTensorsWriter.write(dir.resolve("adapter_model.safetensors"), tensors, Map.of("format", "pt"));
        writeAtomically(dir.resolve("adapter_config.json"), SftArgs.JSON.writeValueAsBytes(adapterConfig(tm, a, targets)));
    }

    /** adapter_config.json's content (PEFT's keys). */
    public static Map<String, Object> adapterConfig(TrainableModel tm, SftArgs a, List<String> targets) {
        Map<String, Object> ac = new LinkedHashMap<>();
        ac.put("peft_type", "LORA");
        ac.put("task_type", "CAUSAL_LM");
        ac.put("base_model_name_or_path", tm.vlm().directory().toAbsolutePath().toString());
        ac.put("r", a.loraRank);
        ac.put("lora_alpha", a.loraAlpha);
        ac.put("lora_dropout", Double.parseDouble(Float.toString(a.loraDropout)));
        ac.put("target_modules", LoraTargets.adapterConfigValue(targets, a));
        ac.put("exclude_modules", LoraTargets.excludeConfigValue(a));
        ac.put("use_rslora", a.useRslora);
        ac.put("bias", "none");
        ac.put("use_dora", false);
        ac.put("fan_in_fan_out", false);
        ac.put("init_lora_weights", true);
        ac.put("inference_mode", true);
        ac.put("modules_to_save", a.modulesToSave == null || a.modulesToSave.isEmpty() ? null : new ArrayList<>(a.modulesToSave));
        return ac;
    }

    static void writeAtomically(Path file, byte[] bytes) throws IOException {
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.write(tmp, bytes);
        Files.move(tmp, file, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }
}
