package dev.vlm4j.cli;

import dev.vlm4j.api.ChatOptions;
import dev.vlm4j.generate.SamplingOptions;
import picocli.CommandLine.Option;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Generation options shared by infer and chat (ms-swift / transformers spellings accepted). */
public final class SamplingMixin {
    @Option(names = {"--max-new-tokens", "--max_new_tokens"}, defaultValue = "2048", paramLabel = "N",
            description = "Most tokens to generate (default ${DEFAULT-VALUE}).")
    int maxNewTokens;

    @Option(names = "--temperature", defaultValue = "0.3", paramLabel = "T", description = "Sampling temperature; 0 = greedy (default ${DEFAULT-VALUE}, MiMo-VL's).")
    double temperature;

    @Option(names = {"--top-p", "--top_p"}, defaultValue = "0.95", paramLabel = "P", description = "Nucleus sampling (default ${DEFAULT-VALUE}).")
    double topP;

    @Option(names = {"--top-k", "--top_k"}, defaultValue = "0", paramLabel = "K", description = "Keep the K most likely tokens; 0 = off.")
    int topK;

    @Option(names = {"--min-p", "--min_p"}, defaultValue = "0", paramLabel = "P", description = "Drop tokens below P x the top probability; 0 = off.")
    double minP;

    @Option(names = {"--repetition-penalty", "--repetition_penalty"}, defaultValue = "1.0", paramLabel = "R", description = "1 = off.")
    double repetitionPenalty;

    @Option(names = "--seed", paramLabel = "N", description = "Random seed (a seed reproduces the output).")
    Long seed;

    @Option(names = "--greedy", description = "Greedy decoding (argmax), whatever the temperature.")
    boolean greedy;

    @Option(names = "--stop", paramLabel = "TEXT", description = "Stop string (repeatable); it is not included in the output.")
    List<String> stop = new ArrayList<>();

    @Option(names = {"--thinking", "--enable-thinking", "--enable_thinking"}, defaultValue = "true", arity = "1", paramLabel = "BOOL",
            description = "MiMo-VL thinking (true by default; false appends /no_think to the last user turn).")
    boolean thinking;

    @Option(names = {"--min-pixels", "--min_pixels"}, paramLabel = "N", description = "Per-image pixel floor (default: the model's, or MIN_PIXELS).")
    Long minPixels;

    @Option(names = {"--max-pixels", "--max_pixels"}, paramLabel = "N", description = "Per-image pixel cap (default: the model's, or MAX_PIXELS).")
    Long maxPixels;

    ChatOptions options() {
        SamplingOptions s = SamplingOptions.builder().temperature(temperature).topP(topP).topK(topK).minP(minP)
                .repetitionPenalty(repetitionPenalty).seed(seed).maxNewTokens(maxNewTokens).stop(stop).greedy(greedy).build();
        return new ChatOptions(s, thinking, minPixels, maxPixels, Map.of());
    }
}
