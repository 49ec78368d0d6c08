package dev.vlm4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.tensor.safetensors.CheckpointException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;

/**
 * The model's shape, read from config.json. Both layouts are accepted: the published one (flat text fields,
 * {@code rope_scaling}) and transformers 5's ({@code text_config}, {@code rope_parameters}). Nothing is inferred
 * from the model's name.
 */
public record ModelConfig(TextConfig text, VisionConfig vision, int imageTokenId, int videoTokenId,
                          int visionStartTokenId, int visionEndTokenId, String architecture) {

    public static final Set<String> SUPPORTED_ARCHITECTURES = Set.of(
            "Qwen2_5_VLForConditionalGeneration", "Qwen2VLForConditionalGeneration_2_5");

    public record TextConfig(int hiddenSize, int intermediateSize, int numLayers, int numHeads, int numKvHeads,
                             int headDim, int vocabSize, double rmsNormEps, double ropeTheta, int[] mropeSection,
                             boolean tieWordEmbeddings, String hiddenAct) {}

    public record VisionConfig(int depth, int hiddenSize, int intermediateSize, int numHeads, int patchSize,
                               int temporalPatchSize, int spatialMergeSize, int windowSize, int outHiddenSize,
                               int[] fullattBlockIndexes, double tokensPerSecond, int inChannels, String hiddenAct) {
        public int headDim() { return hiddenSize / numHeads; }
        /** Values per flattened patch: channels x temporal x patch x patch (1176 for Qwen2.5-VL). */
        public int patchDim() { return inChannels * temporalPatchSize * patchSize * patchSize; }
        public boolean isFullAttention(int block) {
            for (int b : fullattBlockIndexes) if (b == block) return true;
            return false;
        }
    }

    public static ModelConfig load(Path modelDir) {
        Path f = modelDir.resolve("config.json");
        if (!Files.isRegularFile(f)) throw CheckpointException.at(modelDir, "no config.json (is this a model folder?)");
        JsonNode root;
        try {
            root = new ObjectMapper().readTree(f.toFile());
        } catch (IOException e) {
            throw CheckpointException.at(f, "not valid JSON: " + e.getMessage());
        }
        try {
            return parse(root);
        } catch (IllegalArgumentException e) {
            throw CheckpointException.at(f, e.getMessage());
        }
    }

    public static ModelConfig parse(JsonNode root) {
        String arch = root.path("architectures").path(0).asText("");
        String modelType = root.path("model_type").asText("");
        if (!arch.equals("Qwen2_5_VLForConditionalGeneration") && !modelType.equals("qwen2_5_vl"))
            throw new IllegalArgumentException("unsupported architecture '" + (arch.isEmpty() ? modelType : arch)
                    + "': vlm4j runs Qwen2_5_VLForConditionalGeneration (Qwen2.5-VL, MiMo-VL)");
        JsonNode t = root.has("text_config") && root.get("text_config").isObject() ? root.get("text_config") : root;
        JsonNode rope = t.has("rope_parameters") && t.get("rope_parameters").isObject() ? t.get("rope_parameters")
                : t.has("rope_scaling") && t.get("rope_scaling").isObject() ? t.get("rope_scaling") : root.path("rope_scaling");
        int hidden = req(t, "hidden_size");
        int heads = req(t, "num_attention_heads");
        // absent or null means no grouped-query attention, as in transformers
        int kv = t.hasNonNull("num_key_value_heads") ? req(t, "num_key_value_heads") : heads;
        if (hidden % heads != 0) throw new IllegalArgumentException("hidden_size " + hidden + " is not divisible by num_attention_heads " + heads);
        if (heads % kv != 0) throw new IllegalArgumentException("num_attention_heads " + heads + " is not a multiple of num_key_value_heads " + kv);
        int headDim = t.path("head_dim").asInt(hidden / heads);
        double theta = rope.has("rope_theta") ? rope.get("rope_theta").asDouble() : t.path("rope_theta").asDouble(1e6);
        JsonNode ms = rope.path("mrope_section");
        int[] section;
        if (ms.isArray() && ms.size() == 3) {
            section = new int[]{ms.get(0).asInt(), ms.get(1).asInt(), ms.get(2).asInt()};
        } else {
            throw new IllegalArgumentException("no mrope_section in rope_scaling / rope_parameters");
        }
        if (section[0] + section[1] + section[2] != headDim / 2)
            throw new IllegalArgumentException("mrope_section " + java.util.Arrays.toString(section)
                    + " does not sum to head_dim/2 = " + headDim / 2);
        boolean tie = root.has("tie_word_embeddings") ? root.get("tie_word_embeddings").asBoolean()
                : t.path("tie_word_embeddings").asBoolean(false);
        TextConfig tc = new TextConfig(hidden, req(t, "intermediate_size"), req(t, "num_hidden_layers"), heads, kv, headDim,
                req(t, "vocab_size"), t.path("rms_norm_eps").asDouble(1e-6), theta, section, tie,
                t.path("hidden_act").asText("silu"));

        JsonNode v = root.path("vision_config");
        if (!v.isObject()) throw new IllegalArgumentException("no vision_config");
        JsonNode fa = v.path("fullatt_block_indexes");
        int[] full = new int[fa.size()];
        for (int i = 0; i < full.length; i++) full[i] = fa.get(i).asInt();
        int vh = req(v, "vision_config.", "hidden_size");
        int vheads = req(v, "vision_config.", "num_heads");
        if (vh % vheads != 0) throw new IllegalArgumentException("vision hidden_size is not divisible by num_heads");
        VisionConfig vc = new VisionConfig(req(v, "vision_config.", "depth"), vh, req(v, "vision_config.", "intermediate_size"), vheads,
                v.path("patch_size").asInt(14), v.path("temporal_patch_size").asInt(2), v.path("spatial_merge_size").asInt(2),
                v.path("window_size").asInt(112), v.path("out_hidden_size").asInt(hidden), full,
                v.path("tokens_per_second").asDouble(2), v.has("in_channels") ? v.get("in_channels").asInt() : v.path("in_chans").asInt(3),
                v.path("hidden_act").asText("silu"));
        if (vc.outHiddenSize() != hidden)
            throw new IllegalArgumentException("vision out_hidden_size " + vc.outHiddenSize() + " differs from the LM hidden_size " + hidden);
        return new ModelConfig(tc, vc, root.path("image_token_id").asInt(151655), root.path("video_token_id").asInt(151656),
                root.path("vision_start_token_id").asInt(151652), root.path("vision_end_token_id").asInt(151653),
                arch.isEmpty() ? "Qwen2_5_VLForConditionalGeneration" : arch);
    }

    private static int req(JsonNode n, String key) { return req(n, "", key); }

    private static int req(JsonNode n, String section, String key) {
        JsonNode v = n.get(key);
        if (v == null || !v.isNumber() || !v.canConvertToInt() || v.asInt() <= 0 || v.asDouble() != v.asInt())
            throw new IllegalArgumentException("missing or invalid \"" + section + key + "\""
                    + (v == null ? "" : " (" + v + "; a positive integer is required)"));
        return v.asInt();
    }
}
