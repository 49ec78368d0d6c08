package dev.vlm4j.serve;

import io.prometheus.metrics.core.metrics.Counter;
import io.prometheus.metrics.core.metrics.Gauge;
import io.prometheus.metrics.core.metrics.Histogram;
import io.prometheus.metrics.expositionformats.PrometheusTextFormatWriter;
import io.prometheus.metrics.model.registry.PrometheusRegistry;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.UncheckedIOException;

/**
 * The server's Prometheus metrics (a private registry): requests by status, requests cancelled by a client disconnect, prompt and generated tokens, time to
 * first token, inter-token latency, queue depth and running batch size.
 */
public final class ServeMetrics {
    private final PrometheusRegistry registry = new PrometheusRegistry();
    final Counter requests = Counter.builder().name("vlm4j_requests_total").help("HTTP chat requests by model and status")
            .labelNames("model", "status").register(registry);
    final Counter cancelled = Counter.builder().name("vlm4j_cancelled_requests_total")
            .help("Chat requests cancelled because the client disconnected before the answer was complete")
            .labelNames("model").register(registry);
    final Counter promptTokens = Counter.builder().name("vlm4j_prompt_tokens_total").help("Prompt tokens prefilled")
            .labelNames("model").register(registry);
    final Counter generatedTokens = Counter.builder().name("vlm4j_generation_tokens_total").help("Tokens generated")
            .labelNames("model").register(registry);
    final Histogram timeToFirstToken = Histogram.builder().name("vlm4j_time_to_first_token_seconds")
            .help("From submission to the first generated token").labelNames("model")
            .classicUpperBounds(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60).register(registry);
    final Histogram interTokenLatency = Histogram.builder().name("vlm4j_inter_token_latency_seconds")
            .help("Time between two generated tokens of one sequence").labelNames("model")
            .classicUpperBounds(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5).register(registry);
    final Gauge queueDepth = Gauge.builder().name("vlm4j_queue_depth").help("Sequences waiting for admission")
            .labelNames("model").register(registry);
    final Gauge batchSize = Gauge.builder().name("vlm4j_running_batch_size").help("Sequences in the running batch")
            .labelNames("model").register(registry);

    /** The metrics in Prometheus' text format (version 0.0.4). */
    public String scrape() {
        try {
            ByteArrayOutputStream out = new ByteArrayOutputStream();
            PrometheusTextFormatWriter.create().write(out, registry.scrape());
            return out.toString(java.nio.charset.StandardCharsets.UTF_8);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    public static String contentType() { return PrometheusTextFormatWriter.CONTENT_TYPE; }
}
