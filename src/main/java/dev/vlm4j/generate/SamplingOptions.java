package dev.vlm4j.generate;

import dev.vlm4j.model.GenerationConfig;

import java.util.List;
import java.util.Objects;

/**
 * How the next token is chosen. Settings that are "off" have neutral values: {@code topP} 1, {@code topK} 0,
 * {@code minP} 0, {@code repetitionPenalty} 1. Decoding is greedy (argmax) when {@code forceGreedy} is set or the
 * temperature is {@code <= 0}; the repetition penalty still applies then, as in transformers.
 *
 * @param temperature       divides the logits; {@code <= 0} means greedy
 * @param topP              nucleus sampling: keep the smallest set of tokens whose probability reaches this, in (0, 1]
 * @param topK              keep the k most likely tokens; 0 = off
 * @param minP              drop tokens whose probability is below {@code minP} times the top probability, in [0, 1]
 * @param repetitionPenalty transformers' repetition penalty, {@code > 0}; 1 = off
 * @param seed              random seed; null = a fresh random seed
 * @param maxNewTokens      most tokens generated, {@code >= 1}
 * @param stop              stop strings (never empty strings); the output ends before the first one found
 * @param forceGreedy       greedy decoding whatever the temperature
 */
public record SamplingOptions(double temperature, double topP, int topK, double minP, double repetitionPenalty,
                              Long seed, int maxNewTokens, List<String> stop, boolean forceGreedy) {

    /** Default number of new tokens. */
    public static final int DEFAULT_MAX_NEW_TOKENS = 4096;

    /** MiMo-VL's recommended settings: temperature 0.3, top_p 0.95, nothing else. */
    public static final SamplingOptions MIMO_VL_DEFAULTS =
            new SamplingOptions(0.3, 0.95, 0, 0, 1, null, DEFAULT_MAX_NEW_TOKENS, List.of(), false);

    /** Validates every range; throws {@link IllegalArgumentException} naming the setting and its allowed range. */
    public SamplingOptions {
        if (!Double.isFinite(temperature)) throw new IllegalArgumentException("temperature must be a finite number, got " + temperature);
        if (!(topP > 0 && topP <= 1)) throw new IllegalArgumentException("top_p must be in (0, 1], got " + topP);
        if (topK < 0) throw new IllegalArgumentException("top_k must be >= 0 (0 = off), got " + topK);
        if (!(minP >= 0 && minP <= 1)) throw new IllegalArgumentException("min_p must be in [0, 1] (0 = off), got " + minP);
        if (!(repetitionPenalty > 0) || !Double.isFinite(repetitionPenalty))
            throw new IllegalArgumentException("repetition_penalty must be a finite number > 0 (1 = off), got " + repetitionPenalty);
        if (maxNewTokens < 1) throw new IllegalArgumentException("max_new_tokens must be >= 1, got " + maxNewTokens);
        Objects.requireNonNull(stop, "stop");
        for (String s : stop)
            if (s == null || s.isEmpty()) throw new IllegalArgumentException("stop strings must not be null or empty");
        stop = List.copyOf(stop);
    }

    /** MiMo-VL's defaults ({@link #MIMO_VL_DEFAULTS}). */
    public static SamplingOptions defaults() { return MIMO_VL_DEFAULTS; }

    /** Greedy decoding with no penalty, no stop strings and the default token limit. */
    public static SamplingOptions greedy() {
        return new SamplingOptions(0, 1, 0, 0, 1, null, DEFAULT_MAX_NEW_TOKENS, List.of(), true);
    }

    /** True when the next token is the argmax (greedy flag, or temperature {@code <= 0}). */
    public boolean isGreedy() { return forceGreedy || temperature <= 0; }

    /** A builder starting from {@link #MIMO_VL_DEFAULTS}. */
    public static Builder builder() { return new Builder(MIMO_VL_DEFAULTS); }

    /** A builder starting from these options. */
    public Builder toBuilder() { return new Builder(this); }

    /**
     * These options overridden by the checkpoint's generation_config.json where it sets a value
     * ({@code do_sample false} selects greedy decoding).
     */
    public SamplingOptions withGenerationConfig(GenerationConfig g) {
        Builder b = toBuilder();
        if (g.temperature() != null) b.temperature(g.temperature());
        if (g.topP() != null) b.topP(g.topP());
        if (g.topK() != null) b.topK(g.topK());
        if (g.repetitionPenalty() != null) b.repetitionPenalty(g.repetitionPenalty());
        if (g.doSample() != null) b.greedy(!g.doSample());
        return b.build();
    }

    /** Mutable builder for {@link SamplingOptions}; {@link #build()} validates. */
    public static final class Builder {
        private double temperature, topP, minP, repetitionPenalty;
        private int topK, maxNewTokens;
        private Long seed;
        private List<String> stop;
        private boolean greedy;

        private Builder(SamplingOptions o) {
            temperature = o.temperature; topP = o.topP; topK = o.topK; minP = o.minP;
            repetitionPenalty = o.repetitionPenalty; seed = o.seed; maxNewTokens = o.maxNewTokens; stop = o.stop;
            greedy = o.forceGreedy;
        }

        public Builder temperature(double v) { temperature = v; return this; }
        public Builder topP(double v) { topP = v; return this; }
        public Builder topK(int v) { topK = v; return this; }
        public Builder minP(double v) { minP = v; return this; }
        public Builder repetitionPenalty(double v) { repetitionPenalty = v; return this; }
        public Builder seed(Long v) { seed = v; return this; }
        public Builder maxNewTokens(int v) { maxNewTokens = v; return this; }
        public Builder stop(List<String> v) { stop = v; return this; }
        public Builder stop(String... v) { stop = java.util.Arrays.asList(v); return this; }
        public Builder greedy(boolean v) { greedy = v; return this; }

        public SamplingOptions build() {
            return new SamplingOptions(temperature, topP, topK, minP, repetitionPenalty, seed, maxNewTokens, stop, greedy);
        }
    }
}
