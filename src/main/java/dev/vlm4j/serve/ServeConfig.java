package dev.vlm4j.serve;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;

/**
 * Settings of {@code vlm4j serve}; {@link #defaults()} is safe: loopback only, no remote media, no local files.
 *
 * @param host                 address to bind (127.0.0.1 by default)
 * @param port                 TCP port (0 = any free port)
 * @param apiKey               required bearer token for /v1 routes (null = none)
 * @param maxQueue             most waiting sequences before 429
 * @param maxBatch             most sequences decoded together
 * @param maxPrefillsPerStep   most prompts prefilled between two decode steps while sequences are decoding (an
 *                             idle engine admits up to maxBatch at once)
 * @param maxBodyBytes         largest request body (413 beyond)
 * @param maxImagePixels       largest decoded image (width x height; 422 beyond)
 * @param maxVideoFrames       most sampled frames per video (422 beyond)
 * @param maxJsonDepth         deepest JSON nesting accepted (400 beyond)
 * @param maxTokens            largest max_tokens accepted (400 beyond); also the default
 * @param maxN                 largest n accepted
 * @param requestTimeout       per-request limit from admission to the last token
 * @param allowRemoteMedia     fetch http(s) image URLs (public addresses only)
 * @param remoteHosts          when non-empty, the only hosts remote media may come from
 * @param allowedLocalMediaPath local files (paths, file:// URLs) are read only under this folder; null = none
 * @param maxRemoteBytes       largest remote media download
 */
public record ServeConfig(String host, int port, String apiKey, int maxQueue, int maxBatch, int maxPrefillsPerStep,
                          long maxBodyBytes, long maxImagePixels, int maxVideoFrames, int maxJsonDepth, int maxTokens,
                          int maxN, Duration requestTimeout, boolean allowRemoteMedia, List<String> remoteHosts,
                          Path allowedLocalMediaPath, long maxRemoteBytes) {

    public ServeConfig {
        remoteHosts = remoteHosts == null ? List.of() : List.copyOf(remoteHosts);
        if (maxQueue < 1 || maxBatch < 1 || maxPrefillsPerStep < 1) throw new IllegalArgumentException("queue and batch sizes must be >= 1");
    }

    /** Loopback, port 8000, no key, queue 64, batch 16, 20 MB bodies, 16 MP images, 64 frames, depth 32, 4096 tokens. */
    public static ServeConfig defaults() {
        return new ServeConfig("127.0.0.1", 8000, null, 64, 16, 2, 20L << 20, 16_000_000L, 64, 32, 4096, 8,
                Duration.ofMinutes(10), false, List.of(), null, 20L << 20);
    }

    public ServeConfig withPort(int p) {
        return new ServeConfig(host, p, apiKey, maxQueue, maxBatch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, requestTimeout, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }

    public ServeConfig withApiKey(String k) {
        return new ServeConfig(host, port, k, maxQueue, maxBatch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, requestTimeout, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }

    public ServeConfig withQueue(int queue, int batch) {
        return new ServeConfig(host, port, apiKey, queue, batch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, requestTimeout, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }

    public ServeConfig withLimits(long bodyBytes, long imagePixels, int videoFrames, int jsonDepth, int tokens) {
        return new ServeConfig(host, port, apiKey, maxQueue, maxBatch, maxPrefillsPerStep, bodyBytes, imagePixels,
                videoFrames, jsonDepth, tokens, maxN, requestTimeout, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }

    public ServeConfig withMedia(boolean remote, List<String> hosts, Path localRoot) {
        return new ServeConfig(host, port, apiKey, maxQueue, maxBatch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, requestTimeout, remote, hosts, localRoot, maxRemoteBytes);
    }

    public ServeConfig withTimeout(Duration t) {
        return new ServeConfig(host, port, apiKey, maxQueue, maxBatch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, t, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }

    public ServeConfig withHost(String h) {
        return new ServeConfig(h, port, apiKey, maxQueue, maxBatch, maxPrefillsPerStep, maxBodyBytes, maxImagePixels,
                maxVideoFrames, maxJsonDepth, maxTokens, maxN, requestTimeout, allowRemoteMedia, remoteHosts, allowedLocalMediaPath, maxRemoteBytes);
    }
}
