package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.util.function.BooleanSupplier;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Issue #7: a request whose client disconnects is cancelled and its sequence leaves the batch (freeing its KV cache),
 * for non-streaming requests (nothing is written until the end, so only the connection tells) as well as streamed ones.
 */
class ServeCancelTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final int MAX_TOKENS = 4096;
    static OpenAiServer server;

    @BeforeAll
    static void start() {
        server = TestServer.start(Fixtures.tinyModel(), ServeConfig.defaults(), false);
    }

    @AfterAll
    static void stop() {
        if (server != null) server.close();
    }

    /** Temperature 1 on the random tiny model: end-of-sequence is practically never sampled, so it runs to max_tokens. */
    static String body(boolean stream) {
        return "{\"model\":\"tiny\",\"temperature\":1,\"seed\":7,\"max_tokens\":" + MAX_TOKENS + ",\"stream\":" + stream
                + ",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a very long story.\"}]}";
    }

    static boolean waitFor(BooleanSupplier cond, long millis) throws InterruptedException {
        long end = System.nanoTime() + millis * 1_000_000L;
        while (System.nanoTime() - end < 0) {
            if (cond.getAsBoolean()) return true;
            Thread.sleep(20);
        }
        return cond.getAsBoolean();
    }

    static double metric(String name, String labels) throws Exception {
        String text = TestServer.get(server, "/metrics", null).body();
        for (String line : text.split("\n"))
            if (line.startsWith(name + "{") && line.contains(labels)) return Double.parseDouble(line.substring(line.lastIndexOf(' ') + 1));
        return 0;
    }

    /** Sends the request on a raw socket, waits until its sequence runs and ~200 ms more, closes; returns the wait for removal. */
    void dropClientMidGeneration(boolean stream) throws Exception {
        Engine engine = server.engines().get("tiny");
        assertTrue(waitFor(() -> engine.running() == 0, 10_000), "engine idle before the test");
        double cancelled0 = metric("vlm4j_cancelled_requests_total", "model=\"tiny\"");
        byte[] b = body(stream).getBytes(StandardCharsets.UTF_8);
        long closedAt;
        try (Socket s = new Socket()) {
            s.connect(new InetSocketAddress("127.0.0.1", server.port()), 5_000);
            s.setSoTimeout(5_000);
            OutputStream os = s.getOutputStream();
            os.write(("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: "
                    + b.length + "\r\n\r\n").getBytes(StandardCharsets.US_ASCII));
            os.write(b);
            os.flush();
            assertTrue(waitFor(() -> engine.running() == 1, 10_000), "the sequence should start running");
            Thread.sleep(200);
            if (!stream) assertEquals(0, s.getInputStream().available(), "nothing answered yet");
            closedAt = System.nanoTime();
        }
        assertTrue(waitFor(() -> engine.running() == 0, 5_000), "the sequence should leave the batch within 5 s of the disconnect");
        double ms = (System.nanoTime() - closedAt) / 1e6;
        System.out.printf("[serve cancel] stream=%s: sequence removed %.0f ms after the client closed%n", stream, ms);
        assertTrue(waitFor(() -> {
            try {
                return metric("vlm4j_cancelled_requests_total", "model=\"tiny\"") == cancelled0 + 1;
            } catch (Exception e) {
                return false;
            }
        }, 5_000), "one more cancelled request");
        // Well before it could have finished: the generation stopped short of max_tokens and stays stopped.
        double tokens = metric("vlm4j_generation_tokens_total", "model=\"tiny\"");
        Thread.sleep(300);
        assertEquals(tokens, metric("vlm4j_generation_tokens_total", "model=\"tiny\""), "no tokens generated after the cancel");
        assertEquals(0, engine.running());
        // And the server keeps serving.
        HttpResponse<String> r = TestServer.post(server, "/v1/chat/completions",
                "{\"model\":\"tiny\",\"temperature\":0,\"max_tokens\":4,\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}", null);
        assertEquals(200, r.statusCode(), r.body());
        JsonNode j = JSON.readTree(r.body());
        assertTrue(j.get("usage").get("completion_tokens").asInt() >= 1, r.body());
    }

    @Test
    void nonStreamingRequestIsCancelledWhenTheClientDisconnects() throws Exception {
        dropClientMidGeneration(false);
    }

    @Test
    void streamingRequestIsCancelledWhenTheClientDisconnects() throws Exception {
        dropClientMidGeneration(true);
    }
}
