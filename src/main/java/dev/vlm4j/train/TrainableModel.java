package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.train.autograd.GradBackend;
import dev.vlm4j.train.lora.LoraBackend;

import java.nio.file.Path;
import java.util.*;

/**
 * A model loaded for training: the backend stack {@code LoraBackend -> GradBackend -> CpuBackend} under one model
 * definition, with the trainable parameters registered (all weights for full fine-tuning, or LoRA factors applied
 * unmerged with the base frozen). {@link #lossAndBackward} runs the training forward and accumulates gradients.
 */
public final class TrainableModel implements AutoCloseable {
    /** PEFT's key prefix for adapter tensors. */
    public static final String PEFT_PREFIX = "base_model.model.";

    private final VisionLanguageModel vlm;
    private final GradBackend grad;
    private final LoraBackend lora;

    private final Map<String, Tensor> masters;
    /** LoRA's modules_to_save: float32 tensors (canonical names) that replace the base's and that the model computes with. */
    private final Map<String, Tensor> saved = new LinkedHashMap<>();

    private TrainableModel(VisionLanguageModel vlm, GradBackend grad, LoraBackend lora, Map<String, Tensor> masters) {
        this.vlm = vlm;
        this.grad = grad;
        this.lora = lora;
        this.masters = masters;
    }

    /** The PEFT parameter name of a modules_to_save tensor: {@code base_model.model.<transformers 5 name>}. */
    public static String savedParameterName(String canonical) {
        return PEFT_PREFIX + LoraTargets.newStyleName(canonical);
    }

    /**
     * Loads a model for LoRA training with PEFT's {@code modules_to_save}: the tensors of the modules the entries
     * name ({@link LoraTargets#isModuleToSave}) become float32 heap copies, registered as parameters named
     * {@link #savedParameterName}; every other weight stays mapped and frozen. No entries: {@link #load(Path)}.
     */
    public static TrainableModel loadWithModulesToSave(Path dir, List<String> modulesToSave) {
        if (modulesToSave == null || modulesToSave.isEmpty()) return load(dir);
        GradBackend g = new GradBackend(new CpuBackend());
        LoraBackend l = new LoraBackend(g);
        Map<String, Tensor> copies = new LinkedHashMap<>();
        VisionLanguageModel vlm = VisionLanguageModel.load(dir, l, List.of(), ck -> {
            for (String n : LoraTargets.modulesToSave(ck.names(), modulesToSave)) {
                Tensor t = ck.get(n);
                Tensor copy = Tensor.of(t.toFloatArray(), t.shape());
                ck.override(n, copy);
                copies.put(n, copy);
            }
        });
        TrainableModel tm = new TrainableModel(vlm, g, l, Map.of());
        try {
            tm.registerSaved(copies, true);
        } catch (RuntimeException e) {
            tm.close();
            throw e;
        }
        return tm;
    }

    /**
     * Loads a model with PEFT adapters applied unmerged: their modules_to_save tensors replace the base's (float32
     * copies) and their LoRA factors are attached ({@link #addAdapter}); both are parameters when {@code trainable}.
     */
    public static TrainableModel loadWithAdapters(Path dir, Backend base, List<LoraAdapter> adapters, boolean trainable) {
        GradBackend g = new GradBackend(base);
        LoraBackend l = new LoraBackend(g);
        Map<String, Tensor> copies = new LinkedHashMap<>();
        VisionLanguageModel vlm = VisionLanguageModel.load(dir, l, List.of(), ck -> {
            for (LoraAdapter a : adapters) copies.putAll(a.overrideSavedModules(ck));
        });
        TrainableModel tm = new TrainableModel(vlm, g, l, Map.of());
        try {
            tm.registerSaved(copies, trainable);
            for (LoraAdapter a : adapters) tm.addAdapter(a, 0f, trainable);
        } catch (RuntimeException e) {
            tm.close();
            throw e;
        }
        return tm;
    }

    private void registerSaved(Map<String, Tensor> copies, boolean trainable) {
        Map<String, Tensor> params = model().parameters();
        for (var e : copies.entrySet()) {
            Tensor p = params.get(e.getKey());
            if (p == null || p.heapFloats() != e.getValue().heapFloats())
                throw new IllegalStateException("the model does not compute with the float32 copy of " + e.getKey()
                        + " (modules_to_save of a tied or unused tensor?)");
            saved.put(e.getKey(), p);
            if (trainable) grad.addParameter(savedParameterName(e.getKey()), p);
        }
    }

    /** LoRA's modules_to_save tensors by canonical name, as the model computes with them (empty when there are none). */
    public Map<String, Tensor> savedModules() { return Collections.unmodifiableMap(saved); }

    /**
     * Loads a model for full fine-tuning: the weights {@code trainable} selects become float32 heap copies (the master
     * weights; the base files are memory-mapped bf16 and read-only), taken from {@code weightsFrom} when given (a
     * checkpoint folder to resume from) else from {@code dir}, and registered as parameters; the rest stay mapped.
     */
    public static TrainableModel loadForFullTraining(Path dir, java.util.function.Predicate<String> trainable, Path weightsFrom) {
        GradBackend g = new GradBackend(new CpuBackend());
        LoraBackend l = new LoraBackend(g);
        Map<String, Tensor> masters = new LinkedHashMap<>();
        VisionLanguageModel vlm = VisionLanguageModel.load(dir, l, List.of(), ck -> {
            dev.vlm4j.tensor.safetensors.Checkpoint src = weightsFrom == null ? ck : dev.vlm4j.tensor.safetensors.Checkpoint.open(weightsFrom);
            try {
                for (String n : ck.names()) {
                    if (!trainable.test(n)) continue;
                    Tensor t = src.get(n);
                    Tensor copy = Tensor.of(t.toFloatArray(), ck.get(n).shape());
                    ck.override(n, copy);
                    masters.put(n, copy);
                }
            } finally {
                if (src != ck) src.close();
            }
        });
        TrainableModel tm = new TrainableModel(vlm, g, l, masters);
        Map<String, Tensor> params = tm.model().parameters();
        for (String n : masters.keySet()) {
            Tensor p = params.get(n);
            if (p == null || p.heapFloats() != masters.get(n).heapFloats())
                throw new IllegalStateException("the model does not compute with the float32 copy of " + n);
            g.addParameter(n, p);
        }
        if (masters.isEmpty()) throw new IllegalArgumentException("nothing is trainable");
        return tm;
    }

    /**
     * The segments gradient checkpointing recomputes for a scope: {@code layer}, every decoder layer and ViT block
     * (ms-swift's); {@code mlp}, only the decoder layers' MLP halves ({@code model.layers.N.mlp}) and the ViT blocks,
     * the attention halves keeping their activations.
     */
    public static java.util.function.Predicate<String> recomputedSegments(String scope) {
        return switch (scope) {
            case "layer" -> segment -> true;
            case "mlp" -> segment -> !segment.startsWith("model.layers.") || segment.endsWith(".mlp");
            default -> throw new IllegalArgumentException("--gradient_checkpointing_scope " + scope + ": expected layer or mlp");
        };
    }

    /** Full fine-tuning's float32 master weights by published name, in checkpoint shape (empty for LoRA). */
    public Map<String, Tensor> masters() { return Collections.unmodifiableMap(masters); }

    /** Loads a model folder onto a recording CPU stack (nothing trainable yet). */
    public static TrainableModel load(Path dir) { return load(dir, new CpuBackend()); }

    public static TrainableModel load(Path dir, Backend base) {
        GradBackend g = new GradBackend(base);
        LoraBackend l = new LoraBackend(g);
        return new TrainableModel(VisionLanguageModel.load(dir, l, List.of()), g, l, Map.of());
    }

    public VisionLanguageModel vlm() { return vlm; }
    public Qwen25VLModel model() { return vlm.model(); }
    public GradBackend grad() { return grad; }
    public LoraBackend lora() { return lora; }

    /** Full fine-tuning: every weight of the model becomes trainable. */
    public void trainAll() {
        model().parameters().forEach(grad::addParameter);
    }

    /**
     * Applies a PEFT adapter unmerged; its factors become parameters named {@code base_model.model.<module>.lora_A.weight}
     * (the module in the checkpoint's canonical naming, {@code model.layers.N...}) when {@code trainable}.
     */
    public void addAdapter(LoraAdapter a, float dropout, boolean trainable) {
        Map<String, Tensor> params = model().parameters();
        for (String n : a.savedModules().keySet())
            if (!saved.containsKey(n))
                throw new IllegalArgumentException("adapter " + a.dir() + " saves the module tensor " + n
                        + " (modules_to_save): load the model with TrainableModel.loadWithAdapters to apply it");
        for (LoraAdapter.Pair p : a.pairs().values()) {
            Tensor base = params.get(p.weightName());
            if (base == null) throw new IllegalArgumentException("adapter " + a.dir() + " targets " + p.weightName() + " which the model does not have");
            String module = p.weightName().substring(0, p.weightName().length() - ".weight".length());
            Tensor ta = grad.fromHost(p.a().clone(), p.r(), p.in()), tb = grad.fromHost(p.b().clone(), p.out(), p.r());
            lora.attach(base, new LoraBackend.Target(module, ta, tb, (float) a.scale(), dropout));
            if (trainable) {
                grad.addParameter(PEFT_PREFIX + module + ".lora_A.weight", ta);
                grad.addParameter(PEFT_PREFIX + module + ".lora_B.weight", tb);
            }
        }
    }

    /**
     * Adds fresh trainable LoRA factors to the given weights (PEFT's initialisation: A uniform in
     * {@code +-1/sqrt(in)} (kaiming-uniform with a = sqrt(5)), B zero), with the given scale ({@code alpha / r}, or
     * {@code alpha / sqrt(r)} with rslora).
     */
    public void addNewLora(List<String> weightNames, int r, double scale, float dropout, long seed) {
        Map<String, Tensor> params = model().parameters();
        Random rng = new Random(seed);
        for (String w : weightNames) {
            Tensor base = params.get(w);
            if (base == null || base.rank() != 2) throw new IllegalArgumentException("no linear weight " + w + " to adapt");
            int out = (int) base.dim(0), in = (int) base.dim(1);
            float[] a = new float[r * in];
            double bound = 1.0 / Math.sqrt(in);
            for (int i = 0; i < a.length; i++) a[i] = (float) ((rng.nextDouble() * 2 - 1) * bound);
            String module = w.substring(0, w.length() - ".weight".length());
            Tensor ta = grad.fromHost(a, r, in), tb = grad.fromHost(new float[out * r], out, r);
            lora.attach(base, new LoraBackend.Target(module, ta, tb, (float) scale, dropout));
            grad.addParameter(PEFT_PREFIX + module + ".lora_A.weight", ta);
            grad.addParameter(PEFT_PREFIX + module + ".lora_B.weight", tb);
        }
    }

    /**
     * Whether the LM head has neither a gradient nor a LoRA adapter, so that the loss can come from the hidden states
     * in row chunks ({@link GradBackend#linearCrossEntropy}) without the full logits.
     */
    private boolean frozenHead() {
        Tensor head = model().languageModel().lmHead();
        for (Parameter p : grad.parameters().values()) if (p.tensor() == head) return false;
        return !lora.adapts(head);
    }

    /** The mean loss of the LM head's logits of {@code hidden} against {@code labels} (recorded while recording). */
    private double headLoss(Tensor hidden, long[] labels, double lossScale) {
        if (frozenHead()) return grad.linearCrossEntropy(hidden, model().languageModel().lmHead(), labels, lossScale);
        return grad.crossEntropy(model().languageModel().logits(hidden), labels, lossScale);
    }

    /** The result of one training forward: the mean loss and the logits (host copy only when asked). */
    public record Step(double loss, float[] logits) {}

    /**
     * One training forward over {@code ids} (prompt and answer) with {@code labels} (-100 where no loss), then the
     * backward, accumulating {@code lossScale * dLoss/dParam} into the parameter gradients.
     */
    public Step lossAndBackward(int[] ids, long[] labels, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos,
                                double lossScale, boolean keepLogits) {
        grad.record(true);
        try {
            Step[] out = new Step[1];
            // everything the step allocates besides the parameters' gradients is garbage afterwards
            grad.scoped(() -> {
                Tensor hidden = model().trainingHidden(ids, images, videos);
                float[] host = null;
                double loss;
                if (keepLogits) {   // the logits themselves are wanted: not chunked
                    Tensor logits = model().languageModel().logits(hidden);
                    loss = grad.crossEntropy(logits, labels, lossScale);
                    host = grad.toHost(logits);
                } else {
                    loss = headLoss(hidden, labels, lossScale);
                }
                grad.backward();
                out[0] = new Step(loss, host);
                return null;
            });
            return out[0];
        } finally {
            grad.record(false);
            grad.clearTape();
        }
    }

    /**
     * As {@link #lossAndBackward} for several sequences packed into one row (padding_free): one forward over their
     * concatenation, attention and positions kept within each sequence, the loss the mean over all their loss tokens
     * (the first token of each sequence after the first predicts nothing across the boundary). Returns that loss.
     */
    public double lossAndBackwardPacked(List<int[]> ids, List<long[]> labels, List<Qwen25VLModel.VisionInput> images,
                                        List<Qwen25VLModel.VisionInput> videos, double lossScale) {
        if (ids.size() != labels.size()) throw new IllegalArgumentException(ids.size() + " sequences but " + labels.size() + " label rows");
        int total = 0;
        for (int i = 0; i < ids.size(); i++) {
            if (ids.get(i).length != labels.get(i).length)
                throw new IllegalArgumentException("sequence " + i + ": " + ids.get(i).length + " ids but " + labels.get(i).length + " labels");
            total += ids.get(i).length;
        }
        long[] packed = new long[total];
        for (int i = 0, at = 0; i < labels.size(); at += labels.get(i).length, i++) {
            System.arraycopy(labels.get(i), 0, packed, at, labels.get(i).length);
            packed[at] = -100;   // predicted by the previous sequence's last row: not a target
        }
        Qwen25VLModel.VisionInput img = Qwen25VLModel.VisionInput.concat(images), vid = Qwen25VLModel.VisionInput.concat(videos);
        grad.record(true);
        try {
            double[] loss = new double[1];
            grad.scoped(() -> {
                loss[0] = headLoss(model().packedTrainingHidden(ids, img, vid), packed, lossScale);
                grad.backward();
                return null;
            });
            return loss[0];
        } finally {
            grad.record(false);
            grad.clearTape();
        }
    }

    /** The mean loss of one sequence, forward only (nothing recorded, no gradient): evaluation. */
    public double loss(int[] ids, long[] labels, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos) {
        grad.record(false);
        double[] loss = new double[1];
        grad.scoped(() -> {
            loss[0] = headLoss(model().trainingHidden(ids, images, videos), labels, 1.0);
            return null;
        });
        return loss[0];
    }

    /**
     * Overwrites the trainable LoRA factors and modules_to_save tensors with an adapter's (same modules and shapes), e.g. to resume training
     * from a checkpoint; fails naming the first module that differs.
     */
    public void loadLoraWeights(LoraAdapter a) {
        List<LoraBackend.Target> ts = lora.targets();
        if (ts.size() != a.pairs().size())
            throw new IllegalArgumentException("the checkpoint " + a.dir() + " adapts " + a.pairs().size() + " modules, this run " + ts.size());
        for (LoraBackend.Target t : ts) {
            LoraAdapter.Pair p = a.pairs().get(t.module() + ".weight");
            if (p == null) throw new IllegalArgumentException("the checkpoint " + a.dir() + " has no LoRA factors for " + t.module());
            if (p.a().length != t.a().numel() || p.b().length != t.b().numel())
                throw new IllegalArgumentException("the LoRA factors of " + t.module() + " in " + a.dir() + " have rank " + p.r()
                        + ", this run " + t.a().dim(0));
            grad.gradOps().copyFromHost(t.a(), p.a());
            grad.gradOps().copyFromHost(t.b(), p.b());
        }
        if (!saved.keySet().equals(a.savedModules().keySet()))
            throw new IllegalArgumentException("the checkpoint " + a.dir() + " saves the modules " + a.savedModules().keySet()
                    + ", this run " + saved.keySet() + " (--modules_to_save)");
        for (var e : saved.entrySet()) {
            float[] src = a.savedModules().get(e.getKey()).toFloatArray(), dst = e.getValue().heapFloats();
            if (src.length != dst.length) throw new IllegalArgumentException("the checkpoint's " + e.getKey() + " has another shape");
            System.arraycopy(src, 0, dst, 0, dst.length);
        }
    }

    @Override
    public void close() { vlm.close(); }
}
