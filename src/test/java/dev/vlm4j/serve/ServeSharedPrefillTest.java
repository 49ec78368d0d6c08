package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Test;

import java.net.http.HttpResponse;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A request with n > 1 prefills its prompt once: the other choices copy the KV cache, and each choice still generates
 * what a request with n = 1 and that choice's seed (seed + i) generates.
 */
class ServeSharedPrefillTest {
    static final ObjectMapper JSON = new ObjectMapper();

    static String body(int n, long seed) {
        return "{\"model\":\"tiny\",\"temperature\":0.9,\"top_p\":1,\"top_k\":-1,\"seed\":" + seed + ",\"n\":" + n + ",\"max_tokens\":12,"
                + "\"messages\":[{\"role\":\"user\",\"content\":\"Name three colours.\"}]}";
    }

    static JsonNode post(OpenAiServer server, String body) throws Exception {
        HttpResponse<String> r = TestServer.post(server, "/v1/chat/completions", body, null);
        assertEquals(200, r.statusCode(), r.body());
        return JSON.readTree(r.body());
    }

    @Test
    void choicesSharePrefillAndMatchSingleRequests() throws Exception {
        try (OpenAiServer server = TestServer.start(Fixtures.tinyModel(), ServeConfig.defaults(), false)) {
            Engine engine = server.engines().get("tiny");
            long before = engine.prefills();
            JsonNode shared = post(server, body(3, 7));
            assertEquals(before + 1, engine.prefills(), "one prefill for the three choices");
            JsonNode choices = shared.get("choices");
            assertEquals(3, choices.size());
            int promptTokens = shared.get("usage").get("prompt_tokens").asInt();
            for (int i = 0; i < 3; i++) {
                JsonNode one = post(server, body(1, 7 + i));
                assertEquals(choices.get(i).get("index").asInt(), i);
                assertEquals(one.get("choices").get(0).get("message").get("content").asText(),
                        choices.get(i).get("message").get("content").asText(), "choice " + i + " equals n=1 with seed " + (7 + i));
                assertEquals(promptTokens, one.get("usage").get("prompt_tokens").asInt());
            }
            assertEquals(before + 4, engine.prefills());
            assertNotEquals(choices.get(0).get("message").get("content").asText(), choices.get(1).get("message").get("content").asText(),
                    "different seeds give different samples");
        }
    }
}
