package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Base64;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** A list of bad requests, each answered with its 4xx in OpenAI's error JSON; the server keeps serving. */
class ServeBadRequestsTest {
    static final String KEY = "test-key-123";
    static OpenAiServer server;
    static final ObjectMapper JSON = new ObjectMapper();
    @TempDir static Path media;

    @BeforeAll
    static void start() throws Exception {
        Files.writeString(media.resolve("inside.txt"), "not an image");
        ServeConfig cfg = ServeConfig.defaults().withApiKey(KEY).withLimits(256 * 1024, 1_000_000, 16, 16, 64)
                .withMedia(false, List.of(), media);
        server = TestServer.start(Fixtures.tinyModel(), cfg, false);
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
    }

    static String chat(String content) {
        return "{\"model\":\"tiny\",\"max_tokens\":4,\"temperature\":0,\"messages\":[{\"role\":\"user\",\"content\":" + content + "}]}";
    }

    static String image(String url) {
        return chat("[{\"type\":\"image_url\",\"image_url\":{\"url\":\"" + url + "\"}},{\"type\":\"text\",\"text\":\"hi\"}]");
    }

    record Case(String name, String body, String key, int status) {}

    @Test
    void badRequestsGetTheirStatusAndTheServerKeepsServing() throws Exception {
        String png = Base64.getEncoder().encodeToString(Files.readAllBytes(Fixtures.dir().resolve("image_processor/img0_20x20.png")));
        String big = Base64.getEncoder().encodeToString(Files.readAllBytes(Fixtures.dir().resolve("image_processor/img6_4000x3000.png")));
        String deep = "[".repeat(40) + "]".repeat(40);
        List<Case> cases = new ArrayList<>(List.of(
                new Case("malformed JSON", "{\"model\": \"tiny\", \"messages\": [", KEY, 400),
                new Case("not an object", "[1,2,3]", KEY, 400),
                new Case("messages not an array", "{\"messages\": \"hello\"}", KEY, 400),
                new Case("missing messages", "{\"model\":\"tiny\"}", KEY, 400),
                new Case("max_tokens a string", "{\"max_tokens\":\"many\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", KEY, 400),
                new Case("temperature out of range", "{\"temperature\":7,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", KEY, 400),
                new Case("max_tokens over the limit", "{\"max_tokens\":100000,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", KEY, 400),
                new Case("n over the limit", "{\"n\":1000,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", KEY, 400),
                new Case("unknown role", "{\"messages\":[{\"role\":\"wizard\",\"content\":\"hi\"}]}", KEY, 400),
                new Case("content a number", chat("42"), KEY, 400),
                new Case("JSON nested too deeply", "{\"messages\":" + deep + "}", KEY, 400),
                new Case("unknown model", "{\"model\":\"gpt-9\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", KEY, 404),
                new Case("invalid base64", image("data:image/png;base64,@@@not*base64!!"), KEY, 400),
                new Case("data URL not base64", image("data:image/png,abc"), KEY, 400),
                new Case("bytes that are not an image", image("data:image/png;base64," + Base64.getEncoder().encodeToString("hello world, no image".getBytes())), KEY, 422),
                new Case("image over the pixel limit", image("data:image/png;base64," + big), KEY, 422),
                new Case("body too large", image("data:image/png;base64," + "A".repeat(300 * 1024)), KEY, 413),
                new Case("path traversal", image("../../../../etc/passwd"), KEY, 400),
                new Case("file URL outside the media folder", image("file:///etc/passwd"), KEY, 400),
                new Case("local file that is not an image", image("inside.txt"), KEY, 422),
                new Case("cloud metadata URL (remote media off)", image("http://169.254.169.254/latest/meta-data/"), KEY, 400),
                new Case("unsupported part type", chat("[{\"type\":\"audio\",\"audio\":\"x\"}]"), KEY, 400),
                new Case("missing key", chat("\"hi\""), null, 401),
                new Case("wrong key", chat("\"hi\""), "wrong-key", 401),
                new Case("wrong key, same length", chat("\"hi\""), "test-key-124", 401)));
        for (Case c : cases) {
            HttpResponse<String> r = TestServer.post(server, "/v1/chat/completions", c.body(), c.key());
            assertEquals(c.status(), r.statusCode(), c.name() + ": " + r.body());
            JsonNode err = JSON.readTree(r.body()).get("error");
            assertNotNull(err, c.name() + ": OpenAI error JSON expected, got " + r.body());
            assertTrue(err.get("message").isTextual() && err.get("type").isTextual(), c.name());
            assertFalse(r.body().contains("Exception") || r.body().contains("\tat "), c.name() + ": no stack traces: " + r.body());
        }
        // Still serving: a good request with a data-URL image works.
        HttpResponse<String> ok = TestServer.post(server, "/v1/chat/completions", image("data:image/png;base64," + png), KEY);
        assertEquals(200, ok.statusCode(), ok.body());
        JsonNode body = JSON.readTree(ok.body());
        assertEquals("chat.completion", body.get("object").asText());
        assertTrue(body.get("usage").get("prompt_tokens").asInt() > 4);
        assertEquals(404, TestServer.get(server, "/v1/nothing", KEY).statusCode());
        assertEquals(200, TestServer.get(server, "/health", null).statusCode());
        String metrics = TestServer.get(server, "/metrics", null).body();
        assertTrue(metrics.contains("vlm4j_requests_total") && metrics.contains("vlm4j_time_to_first_token_seconds"), metrics);
    }

    @Test
    void remoteMediaToPrivateAddressesIsRefusedEvenWhenAllowed() {
        for (String host : List.of("169.254.169.254", "127.0.0.1", "10.0.0.1", "192.168.1.1", "::1", "fd00::1", "0.0.0.0", "::ffff:169.254.169.254")) {
            ApiException e = assertThrows(ApiException.class, () -> MediaResolver.checkPublic(host, "p"), host);
            assertEquals(400, e.status());
        }
        ServeConfig cfg = ServeConfig.defaults().withMedia(true, List.of("images.example.org"), null);
        ApiException e = assertThrows(ApiException.class, () -> new MediaResolver(cfg).image("http://169.254.169.254/x.png", "p"));
        assertEquals(400, e.status());
    }
}
