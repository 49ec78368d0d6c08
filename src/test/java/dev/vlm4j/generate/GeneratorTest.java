package dev.vlm4j.generate;

import dev.vlm4j.Fixtures;
import dev.vlm4j.api.ChatOptions;
import dev.vlm4j.api.ChatResult;
import dev.vlm4j.api.VisionLanguageModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** The decode loop on the tiny model: token limit, stop strings (never streamed), streaming equals the result. */
class GeneratorTest {
    static VisionLanguageModel vlm;
    static final List<Map<String, Object>> MSGS = List.of(Map.of("role", "user", "content", "Hello"));

    @BeforeAll
    static void load() { vlm = VisionLanguageModel.load(Fixtures.tinyModel()); }

    @AfterAll
    static void close() { if (vlm != null) vlm.close(); }

    static ChatOptions greedy(int n, String... stop) {
        return ChatOptions.defaults().withSampling(SamplingOptions.greedy().toBuilder().maxNewTokens(n).stop(stop).build());
    }

    @Test
    void stopsAtTheTokenLimitAndStreamsExactlyTheResult() {
        StringBuilder streamed = new StringBuilder();
        ChatResult r = vlm.chat(MSGS, greedy(12), streamed::append);
        assertEquals("length", r.finishReason());
        assertEquals(12, r.completionTokens());
        assertEquals(r.text(), streamed.toString());
        assertEquals(vlm.tokenizer().decode(r.tokens(), true), r.text());
    }

    @Test
    void stopStringEndsGenerationAndIsNeverEmitted() {
        String full = vlm.chat(MSGS, greedy(12), null).text();
        assertTrue(full.length() > 6, "need some text to cut: " + full);
        int cut = full.length() / 2;
        String stop = full.substring(cut, Math.min(full.length(), cut + 3));
        String expected = full.substring(0, full.indexOf(stop));
        StringBuilder streamed = new StringBuilder();
        ChatResult r = vlm.chat(MSGS, greedy(12, stop), streamed::append);
        assertEquals("stop", r.finishReason());
        assertEquals(expected, r.text(), "text before the stop string " + stop);
        assertEquals(expected, streamed.toString(), "streamed text");
        assertTrue(r.completionTokens() < 12);
    }

    @Test
    void seededSamplingIsReproducibleAndDiffersAcrossSeeds() {
        ChatOptions a = ChatOptions.defaults().withSampling(SamplingOptions.builder().temperature(1.0).maxNewTokens(10).seed(1L).build());
        ChatOptions b = ChatOptions.defaults().withSampling(SamplingOptions.builder().temperature(1.0).maxNewTokens(10).seed(2L).build());
        assertArrayEquals(vlm.chat(MSGS, a).tokens(), vlm.chat(MSGS, a).tokens());
        assertFalse(java.util.Arrays.equals(vlm.chat(MSGS, a).tokens(), vlm.chat(MSGS, b).tokens()));
    }

    @Test
    void thinkingOffAddsTheSwitchToThePrompt() {
        var on = vlm.buildPrompt(MSGS, ChatOptions.defaults());
        var off = vlm.buildPrompt(MSGS, ChatOptions.defaults().withThinking(false));
        assertFalse(on.text().contains("/no_think"));
        assertTrue(off.text().contains("Hello /no_think<|im_end|>"), off.text());
    }
}
