package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.vlm4j.compute.cuda.CudaBackend;
import dev.vlm4j.compute.cuda.Precision;
import dev.vlm4j.train.autograd.GradBackend;

import java.nio.file.Path;
import java.util.*;
import java.util.regex.Pattern;

/**
 * The vlm4j side of scripts/gpu-train-compare.sh: one LoRA training step of a MiMo-VL-7B-shaped checkpoint on the
 * CUDA backend, defined as the transformers + peft side (scripts/gpu_train_hf.py) defines it: ms-swift's LoRA
 * defaults (rank 8, alpha 32, dropout 0.05, every linear layer of the language model, vision tower and LM head
 * frozen), one text sequence of {@code --tokens} random ids with the loss on every token, batch 1; a step is the
 * forward, the backward, gradient clipping to norm 1.0 and an AdamW update (lr 1e-4, weight decay 0.1), timed with
 * the device synchronised after each step.
 * <pre>
 *   java ... dev.vlm4j.train.CudaTrainBench CKPT OUT.json [--tokens 2048] [--steps 8] [--warmup 3]
 *        [--gradient-checkpointing true|false] [--precision bf16|f32]
 * </pre>
 * Peak memory: the most device memory in use (weights and live tensors; torch's max_memory_allocated) during the
 * steps, and the most the backend held from the driver (cached blocks too; torch's max_memory_reserved).
 */
public final class CudaTrainBench {
    private static final Pattern LLM_LINEAR = Pattern.compile("model\\.layers\\.\\d+\\.(self_attn|mlp)\\.\\w+_proj\\.weight");

    public static void main(String[] args) throws Exception {
        if (args.length < 2) throw new IllegalArgumentException("usage: CudaTrainBench CKPT OUT.json [options]");
        Path ckpt = Path.of(args[0]), out = Path.of(args[1]);
        int tokens = 2048, steps = 8, warmup = 3;
        boolean gc = true, other = false;
        String scope = "layer";
        Precision precision = Precision.BF16;
        for (int i = 2; i < args.length; i += 2) {
            String v = args[i + 1];
            switch (args[i]) {
                case "--tokens" -> tokens = Integer.parseInt(v);
                case "--steps" -> steps = Integer.parseInt(v);
                case "--warmup" -> warmup = Integer.parseInt(v);
                case "--gradient-checkpointing" -> gc = Boolean.parseBoolean(v);
                case "--checkpoint-scope" -> scope = v;
                case "--also-other-mode" -> other = Boolean.parseBoolean(v);
                case "--precision" -> precision = v.equalsIgnoreCase("f32") ? Precision.F32 : Precision.BF16;
                case "--sample-host" -> sampleHost = Boolean.parseBoolean(v);
                default -> throw new IllegalArgumentException("unknown option " + args[i]);
            }
        }
        CudaBackend cuda = CudaBackend.create(0, precision);
        long t0 = System.nanoTime();
        try (TrainableModel tm = TrainableModel.load(ckpt, cuda)) {
            List<String> targets = new ArrayList<>();
            for (String n : tm.model().parameters().keySet()) if (LLM_LINEAR.matcher(n).matches()) targets.add(n);
            int r = 8;
            double alpha = 32;
            tm.addNewLora(targets, r, alpha / r, 0.05f, 42);
            java.util.function.Predicate<String> recompute = TrainableModel.recomputedSegments(scope);
            tm.grad().checkpointing(gc ? recompute : null);
            List<Parameter> params = new ArrayList<>(tm.grad().parameters().values());
            long trainable = 0;
            for (Parameter p : params) trainable += p.tensor().numel();
            AdamW opt = new AdamW(params, 0.9, 0.999, 1e-8, 0.1);
            cuda.synchronize();
            cuda.resetPeakBytesInUse();
            double loadS = (System.nanoTime() - t0) / 1e9;
            System.out.printf("loaded %s in %.1f s on %s: %d LoRA modules, %,d trainable parameters, checkpointing %s%n",
                    ckpt, loadS, cuda.deviceName(), targets.size(), trainable, gc ? scope : "off");

            Random rnd = new Random(1234);
            int[] ids = new int[tokens];
            long[] labels = new long[tokens];
            for (int i = 0; i < tokens; i++) {
                ids[i] = rnd.nextInt(151643);
                labels[i] = ids[i];
            }
            List<Double> losses = new ArrayList<>();
            double[] ms = new double[steps];
            for (int s = 0; s < warmup + steps; s++) {
                long a = System.nanoTime();
                double loss = step(tm, cuda, opt, params, ids, labels, 1000 + s);
                double t = (System.nanoTime() - a) / 1e6;
                losses.add(loss);
                if (s >= warmup) ms[s - warmup] = t;
                System.out.printf("%s step %d: %.1f ms, loss %.5f%n", s < warmup ? "warm-up" : "timed", s, t, loss);
                String prof = cuda.profileReport(40);
                if (prof != null && s == warmup + steps - 1) System.out.print(prof);
            }
            if (sampleHost) printSamples(30);
            double[] sorted = ms.clone();
            Arrays.sort(sorted);
            double median = steps % 2 == 1 ? sorted[steps / 2] : (sorted[steps / 2 - 1] + sorted[steps / 2]) / 2;
            long peakInUse = cuda.bytesInUse()[1];
            long[] bytes = cuda.deviceBytes();
            Map<String, Object> otherMode = new LinkedHashMap<>();
            if (other) {   // the same steps with gradient checkpointing switched the other way, for the time/memory trade
                tm.grad().checkpointing(!gc);
                cuda.releaseCachedMemory();
                cuda.resetPeakBytesInUse();
                double[] t2 = new double[4];
                for (int s = 0; s < 2 + t2.length; s++) {
                    long a = System.nanoTime();
                    double loss = step(tm, cuda, opt, params, ids, labels, 2000 + s);
                    double t = (System.nanoTime() - a) / 1e6;
                    if (s >= 2) t2[s - 2] = t;
                    System.out.printf("checkpointing %s: step %d: %.1f ms, loss %.5f%n", !gc, s, t, loss);
                }
                Arrays.sort(t2);
                otherMode.put("gradient_checkpointing", !gc);
                otherMode.put("step_ms_median", (t2[1] + t2[2]) / 2);
                otherMode.put("tokens_per_s", tokens / ((t2[1] + t2[2]) / 2000));
                otherMode.put("peak_in_use_gb", cuda.bytesInUse()[1] / 1e9);
                System.out.println("other mode: " + otherMode);
                tm.grad().checkpointing(gc ? recompute : null);
            }
            // the forward alone (no tape, no backward), for the split of a step's time
            double[] fwd = new double[3];
            for (int s = 0; s < fwd.length; s++) {
                long a = System.nanoTime();
                tm.loss(ids, labels, null, null);
                cuda.synchronize();
                fwd[s] = (System.nanoTime() - a) / 1e6;
            }
            Arrays.sort(fwd);
            System.out.printf("forward only: %.1f ms (best of 3)%n", fwd[0]);
            double mean = Arrays.stream(ms).average().orElse(Double.NaN);
            Map<String, Object> res = new LinkedHashMap<>();
            res.put("side", "vlm4j");
            res.put("device", cuda.deviceName());
            res.put("precision", precision.toString());
            res.put("tokens", tokens);
            res.put("steps", steps);
            res.put("warmup", warmup);
            res.put("gradient_checkpointing", gc);
            res.put("checkpoint_scope", gc ? scope : "off");
            res.put("lora_modules", targets.size());
            res.put("trainable_params", trainable);
            res.put("step_ms_median", median);
            res.put("step_ms_mean", mean);
            res.put("step_ms", ms);
            res.put("tokens_per_s", tokens / (median / 1000));
            res.put("peak_device_gb", bytes[1] / 1e9);
            res.put("peak_in_use_gb", peakInUse / 1e9);
            if (other) res.put("other_mode", otherMode);
            res.put("device_gb_after", bytes[0] / 1e9);
            res.put("losses", losses);
            res.put("forward_ms", fwd[0]);
            res.put("load_s", loadS);
            new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValue(out.toFile(), res);
            System.out.printf("vlm4j LoRA step: %d tokens, median %.1f ms (mean %.1f), %.0f tok/s, peak %.1f GB in use, %.1f GB held%n",
                    tokens, median, mean, tokens / (median / 1000), peakInUse / 1e9, bytes[1] / 1e9);
        } finally {
            cuda.close();
        }
    }

    /** With --sample-host true: where the host thread spends a step (stack samples) and when the step's parts return. */
    private static boolean sampleHost;
    private static final Map<String, Integer> samples = new java.util.concurrent.ConcurrentHashMap<>();

    /** One timed LoRA step: forward and backward with dropout seed {@code seed}, clipping, AdamW, device synchronised. */
    private static double step(TrainableModel tm, CudaBackend cuda, AdamW opt, List<Parameter> params, int[] ids,
                               long[] labels, long seed) {
        Thread main = Thread.currentThread();
        boolean[] done = {false};
        Thread sampler = null;
        if (sampleHost) {   // the innermost vlm4j frame (and its caller) of the stepping thread, every 0.2 ms
            sampler = new Thread(() -> {
                while (!done[0]) {
                    StackTraceElement[] st = main.getStackTrace();
                    String top = null;
                    for (int i = 0; i < st.length && top == null; i++)
                        if (st[i].getClassName().startsWith("dev.vlm4j"))
                            top = (i > 0 ? st[0].getClassName().replaceAll(".*\\.", "") + "." + st[0].getMethodName() + " <- " : "")
                                    + st[i].getClassName().replaceAll(".*\\.", "") + "." + st[i].getMethodName() + ":" + st[i].getLineNumber();
                    if (top != null) samples.merge(top, 1, Integer::sum);
                    java.util.concurrent.locks.LockSupport.parkNanos(200_000);
                }
            });
            sampler.setDaemon(true);
            sampler.start();
        }
        long a = System.nanoTime();
        tm.lora().training(true, seed);
        tm.grad().zeroGrad();
        double loss = tm.lossAndBackward(ids, labels, null, null, 1.0, false).loss();
        long b = System.nanoTime();
        tm.lora().training(false, 0);
        AdamW.clipGradNorm(params, 1.0);
        long c = System.nanoTime();
        opt.step(1e-4);
        cuda.synchronize();
        long d = System.nanoTime();
        done[0] = true;
        if (sampleHost) {
            System.out.printf("  host: forward+backward queued after %.1f ms, clipping (waits for the GPU) done at %.1f ms, step %.1f ms%n",
                    (b - a) / 1e6, (c - a) / 1e6, (d - a) / 1e6);
            try { sampler.join(); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        return loss;
    }

    /** The most sampled host frames so far, then forgets them. */
    static void printSamples(int top) {
        int total = samples.values().stream().mapToInt(Integer::intValue).sum();
        System.out.printf("host samples: %d%n", total);
        samples.entrySet().stream().sorted((x, y) -> y.getValue() - x.getValue()).limit(top)
                .forEach(e -> System.out.printf("  %5.1f%%  %s%n", 100.0 * e.getValue() / total, e.getKey()));
        samples.clear();
    }
}
