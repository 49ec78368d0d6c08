package dev.vlm4j.api;

/**
 * The outcome of one chat turn: MiMo-VL's reasoning (the text inside {@code <think>...</think>}, null when the model
 * did not think), the answer, the raw generated text, token counts and timings.
 */
public record ChatResult(String reasoning, String answer, String text, int[] tokens, int promptTokens, int completionTokens,
                         String finishReason, double prefillMillis, double decodeMillis) {

    /** Generated tokens per second during decoding. */
    public double decodeTokensPerSecond() {
        return decodeMillis <= 0 ? 0 : completionTokens * 1000.0 / decodeMillis;
    }

    /** Prompt tokens per second during prefill (vision encoding included). */
    public double prefillTokensPerSecond() {
        return prefillMillis <= 0 ? 0 : promptTokens * 1000.0 / prefillMillis;
    }
}
