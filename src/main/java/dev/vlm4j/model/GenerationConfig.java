package dev.vlm4j.model;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.tensor.safetensors.CheckpointException;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;

/** generation_config.json: end-of-sequence ids and the checkpoint's suggested sampling settings. */
public record GenerationConfig(int[] eosTokenIds, Integer padTokenId, Double temperature, Double topP, Integer topK,
                               Double repetitionPenalty, Boolean doSample) {

    public static GenerationConfig load(Path modelDir, int fallbackEos) {
        Path f = modelDir.resolve("generation_config.json");
        if (!Files.isRegularFile(f)) return new GenerationConfig(new int[]{fallbackEos}, null, null, null, null, null, null);
        try {
            JsonNode n = new ObjectMapper().readTree(f.toFile());
            JsonNode e = n.path("eos_token_id");
            int[] eos;
            if (e.isArray()) {
                eos = new int[e.size()];
                for (int i = 0; i < eos.length; i++) eos[i] = e.get(i).asInt();
            } else if (e.canConvertToInt()) {
                eos = new int[]{e.asInt()};
            } else {
                eos = new int[]{fallbackEos};
            }
            return new GenerationConfig(eos, n.has("pad_token_id") && !n.get("pad_token_id").isNull() ? n.get("pad_token_id").asInt() : null,
                    n.has("temperature") ? n.get("temperature").asDouble() : null,
                    n.has("top_p") ? n.get("top_p").asDouble() : null,
                    n.has("top_k") ? n.get("top_k").asInt() : null,
                    n.has("repetition_penalty") ? n.get("repetition_penalty").asDouble() : null,
                    n.has("do_sample") ? n.get("do_sample").asBoolean() : null);
        } catch (IOException ex) {
            throw CheckpointException.at(f, "not valid JSON: " + ex.getMessage());
        }
    }
}
