package dev.vlm4j.api;

import dev.vlm4j.generate.SamplingOptions;

import java.util.Map;

/**
 * Per-request settings of {@link VisionLanguageModel#chat}: sampling, MiMo-VL's thinking switch (on by default),
 * image pixel budget overrides, and extra chat-template keyword arguments (tools, add_vision_id, ...).
 */
public record ChatOptions(SamplingOptions sampling, boolean enableThinking, Long minPixels, Long maxPixels,
                          Map<String, Object> templateKwargs) {

    public ChatOptions {
        if (sampling == null) sampling = SamplingOptions.defaults();
        templateKwargs = templateKwargs == null ? Map.of() : Map.copyOf(templateKwargs);
    }

    /** MiMo-VL's defaults: thinking on, temperature 0.3, top_p 0.95. */
    public static ChatOptions defaults() { return new ChatOptions(SamplingOptions.defaults(), true, null, null, Map.of()); }

    public ChatOptions withSampling(SamplingOptions s) { return new ChatOptions(s, enableThinking, minPixels, maxPixels, templateKwargs); }

    public ChatOptions withThinking(boolean on) { return new ChatOptions(sampling, on, minPixels, maxPixels, templateKwargs); }

    public ChatOptions withPixels(Long min, Long max) { return new ChatOptions(sampling, enableThinking, min, max, templateKwargs); }

    public ChatOptions withTemplateKwargs(Map<String, Object> kw) { return new ChatOptions(sampling, enableThinking, minPixels, maxPixels, kw); }
}
