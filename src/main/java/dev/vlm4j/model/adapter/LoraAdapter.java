package dev.vlm4j.model.adapter;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;
import dev.vlm4j.tensor.safetensors.CheckpointException;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

/**
 * A PEFT LoRA adapter folder ({@code adapter_config.json} + {@code adapter_model.safetensors}). Keys
 * {@code base_model.model.<module>.lora_A.weight [r, in]} / {@code .lora_B.weight [out, r]} are accepted with the
 * module in either naming scheme ({@code model.layers.N...} or {@code model.language_model.layers.N...}).
 * {@code y = W x + (B (A x)) * scale}, {@code scale = alpha / r} ({@code alpha / sqrt(r)} with rslora).
 * <p>
 * Other {@code base_model.model.<module>.<param>} keys are PEFT's {@code modules_to_save} (saved without the
 * {@code modules_to_save.<adapter>} part, as {@code get_peft_model_state_dict} writes them; that part is also accepted):
 * whole tensors that replace the base model's ({@link #savedModules}).
 */
public final class LoraAdapter {
    /** One adapted module: its canonical weight name and the two factors as float32 row-major arrays. */
    public record Pair(String weightName, float[] a, int r, int in, float[] b, int out) {}

    private final Path dir;
    private final double scale;
    private final Map<String, Pair> pairs;
    private final Map<String, Tensor> saved;

    private LoraAdapter(Path dir, double scale, Map<String, Pair> pairs, Map<String, Tensor> saved) {
        this.dir = dir;
        this.scale = scale;
        this.pairs = pairs;
        this.saved = saved;
    }

    public Path dir() { return dir; }
    public double scale() { return scale; }
    public Map<String, Pair> pairs() { return pairs; }
    /** The modules_to_save tensors by canonical name ({@code lm_head.weight}, {@code model.norm.weight}), float32. */
    public Map<String, Tensor> savedModules() { return saved; }

    public static LoraAdapter load(Path dir) {
        Path cfgFile = dir.resolve("adapter_config.json");
        Path weights = dir.resolve("adapter_model.safetensors");
        if (!Files.isRegularFile(cfgFile)) throw CheckpointException.at(dir, "no adapter_config.json (is this a PEFT LoRA adapter folder?)");
        if (!Files.isRegularFile(weights)) throw CheckpointException.at(dir, "no adapter_model.safetensors");
        JsonNode cfg;
        try {
            cfg = new ObjectMapper().readTree(cfgFile.toFile());
        } catch (IOException e) {
            throw CheckpointException.at(cfgFile, "not valid JSON: " + e.getMessage());
        }
        String type = cfg.path("peft_type").asText("LORA");
        if (!type.equalsIgnoreCase("LORA")) throw CheckpointException.at(cfgFile, "peft_type " + type + " is not supported (LORA only)");
        if (cfg.path("use_dora").asBoolean(false)) throw CheckpointException.at(cfgFile, "DoRA adapters are not supported");
        int r = cfg.path("r").asInt(0);
        if (r <= 0) throw CheckpointException.at(cfgFile, "missing or invalid \"r\"");
        double alpha = cfg.path("lora_alpha").asDouble(r);
        boolean rs = cfg.path("use_rslora").asBoolean(false);
        double scale = rs ? alpha / Math.sqrt(r) : alpha / r;
        Map<String, Pair> pairs = new LinkedHashMap<>();
        Map<String, Tensor> saved = new LinkedHashMap<>();
        try (SafeTensorsFile f = SafeTensorsFile.open(weights)) {
            for (String key : f.names()) {
                if (!key.contains("lora_")) {
                    String m = key.startsWith("base_model.model.") ? key.substring("base_model.model.".length()) : key;
                    m = m.replaceFirst("\\.modules_to_save(\\.default)?\\.([^.]+)$", ".$2");
                    Tensor t = f.get(key);
                    saved.put(Checkpoint.canonicalName(m), Tensor.of(t.toFloatArray(), t.shape()));
                    continue;
                }
                if (!key.endsWith(".lora_A.weight")) continue;
                String module = key.substring(0, key.length() - ".lora_A.weight".length());
                String bKey = module + ".lora_B.weight";
                if (!f.contains(bKey)) throw CheckpointException.at(weights, "has " + key + " but no " + bKey);
                String m = module.startsWith("base_model.model.") ? module.substring("base_model.model.".length()) : module;
                String canon = Checkpoint.canonicalName(m) + ".weight";
                Tensor a = f.get(key), b = f.get(bKey);
                if (a.rank() != 2 || b.rank() != 2 || a.dim(0) != b.dim(1))
                    throw CheckpointException.at(weights, "LoRA factors of " + module + " have incompatible shapes");
                pairs.put(canon, new Pair(canon, a.toFloatArray(), (int) a.dim(0), (int) a.dim(1), b.toFloatArray(), (int) b.dim(0)));
            }
        }
        if (pairs.isEmpty() && saved.isEmpty()) throw CheckpointException.at(weights, "holds no lora_A/lora_B weights");
        return new LoraAdapter(dir, scale, pairs, saved);
    }

    /**
     * Replaces the checkpoint's tensors with the adapter's modules_to_save, then merges every pair into the
     * checkpoint's view of its base weight ({@code W' = W + scale * B A}, float32), so the model built afterwards
     * computes with the adapter applied.
     */
    public void mergeInto(Checkpoint ckpt) {
        overrideSavedModules(ckpt);
        for (Pair p : pairs.values()) {
            if (!ckpt.contains(p.weightName()))
                throw CheckpointException.at(dir, "adapter targets " + p.weightName() + " which the base model does not have");
            Tensor w = ckpt.get(p.weightName());
            if (w.rank() != 2 || w.dim(0) != p.out() || w.dim(1) != p.in())
                throw CheckpointException.at(dir, "adapter for " + p.weightName() + " is [" + p.out() + "x" + p.in()
                        + "] but the base weight is " + java.util.Arrays.toString(w.shape()));
            ckpt.override(p.weightName(), Tensor.of(merged(w.toFloatArray(), p, scale), p.out(), p.in()));
        }
    }

    /**
     * Replaces the checkpoint's tensors with the adapter's modules_to_save tensors (float32 copies, which a model
     * built afterwards computes with); returns the copies by canonical name.
     */
    public Map<String, Tensor> overrideSavedModules(Checkpoint ckpt) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        for (var e : saved.entrySet()) {
            if (!ckpt.contains(e.getKey()))
                throw CheckpointException.at(dir, "adapter saves the module tensor " + e.getKey() + " which the base model does not have");
            Tensor base = ckpt.get(e.getKey());
            if (!java.util.Arrays.equals(base.shape(), e.getValue().shape()))
                throw CheckpointException.at(dir, "adapter's " + e.getKey() + " is " + java.util.Arrays.toString(e.getValue().shape())
                        + " but the base model's is " + java.util.Arrays.toString(base.shape()));
            Tensor copy = Tensor.of(e.getValue().toFloatArray().clone(), e.getValue().shape());
            ckpt.override(e.getKey(), copy);
            out.put(e.getKey(), copy);
        }
        return out;
    }

    /** {@code W + scale * B A} in float32 (accumulating the rank-r product in double). */
    public static float[] merged(float[] w, Pair p, double scale) {
        float[] out = w.clone();
        for (int o = 0; o < p.out(); o++) {
            for (int i = 0; i < p.in(); i++) {
                double s = 0;
                for (int k = 0; k < p.r(); k++) s += (double) p.b()[o * p.r() + k] * p.a()[k * p.in() + i];
                out[o * p.in() + i] = (float) (w[o * p.in() + i] + scale * s);
            }
        }
        return out;
    }
}
