package dev.vlm4j.cli;

import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.cpu.Parallel;
import dev.vlm4j.serve.OpenAiServer;
import dev.vlm4j.serve.ServeConfig;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.Callable;
import java.util.concurrent.CountDownLatch;

/**
 * {@code vlm4j serve}: an OpenAI-compatible HTTP server with continuous batching. Each {@code --adapters NAME=PATH}
 * is served as its own model name, on its own copy of the weights with the adapter merged in.
 */
@Command(name = "serve", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Serve the model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/models, /health, /metrics).",
                "Binds to 127.0.0.1 unless --host says otherwise; remote and local media are off unless enabled."})
public final class ServeCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, paramLabel = "DIR|ORG/NAME", description = "Model folder or hub id.")
    String model;

    @Option(names = {"--adapters", "--adapter"}, paramLabel = "NAME=PATH", description = "LoRA adapter served as model NAME (repeatable).")
    Map<String, Path> adapters = new LinkedHashMap<>();

    @Option(names = "--device", defaultValue = "cpu", paramLabel = "DEV", description = "cpu (default) or cuda[:N].")
    String device;

    @Option(names = "--quant", paramLabel = "MODE",
            description = "Weights: CPU bf16 (as stored, default), f32, q8_0, q4_0; CUDA bf16 (default) or f32.")
    String quant;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    @Option(names = "--host", defaultValue = "127.0.0.1", description = "Address to bind (default ${DEFAULT-VALUE}).")
    String host;

    @Option(names = "--port", defaultValue = "8000", description = "Port (default ${DEFAULT-VALUE}; 0 = any free port).")
    int port;

    @Option(names = "--api-key", paramLabel = "KEY", description = "Bearer key required on /v1 routes (default: $VLM4J_API_KEY, else none).")
    String apiKey;

    @Option(names = "--served-model-name", paramLabel = "NAME", description = "Name of the base model in the API (default: the --model value).")
    String servedName;

    @Option(names = "--allow-remote-media", description = "Fetch http(s) media URLs (public addresses only).")
    boolean allowRemote;

    @Option(names = "--allowed-media-hosts", split = ",", paramLabel = "HOST", description = "Only these hosts for remote media.")
    List<String> remoteHosts = new ArrayList<>();

    @Option(names = "--allowed-local-media-path", paramLabel = "DIR", description = "Allow local media paths under DIR.")
    Path localMedia;

    @Option(names = "--max-queue", defaultValue = "64", description = "Waiting sequences before 429 (default ${DEFAULT-VALUE}).")
    int maxQueue;

    @Option(names = "--max-batch", defaultValue = "16", description = "Sequences decoded together (default ${DEFAULT-VALUE}).")
    int maxBatch;

    @Option(names = "--max-body-bytes", defaultValue = "20971520", description = "Largest request body (default ${DEFAULT-VALUE}).")
    long maxBody;

    @Option(names = "--max-image-pixels", defaultValue = "16000000", description = "Largest image (default ${DEFAULT-VALUE}).")
    long maxPixels;

    @Option(names = "--max-video-frames", defaultValue = "64", description = "Most sampled video frames (default ${DEFAULT-VALUE}).")
    int maxFrames;

    @Option(names = "--max-tokens", defaultValue = "4096", description = "Largest (and default) max_tokens (default ${DEFAULT-VALUE}).")
    int maxTokens;

    @Option(names = "--request-timeout", defaultValue = "600", paramLabel = "SECONDS", description = "Per-request time limit (default ${DEFAULT-VALUE}).")
    long timeoutSeconds;

    @Override
    public Integer call() throws Exception {
        if (threads != null) Parallel.setThreads(threads);
        ModelOptions mo = new ModelOptions();
        mo.model = Path.of(model);
        mo.device = device;
        mo.quant = quant;
        mo.threads = threads;
        Path dir = mo.resolveModelDir();
        String key = apiKey != null ? apiKey : System.getenv("VLM4J_API_KEY");
        ServeConfig cfg = new ServeConfig(host, port, key == null || key.isBlank() ? null : key, maxQueue, maxBatch, 2, maxBody,
                maxPixels, maxFrames, 32, maxTokens, 8, Duration.ofSeconds(timeoutSeconds), allowRemote, remoteHosts, localMedia,
                maxBody);
        List<OpenAiServer.ServedModel> served = new ArrayList<>();
        String base = servedName != null ? servedName : model;
        served.add(new OpenAiServer.ServedModel(base, VisionLanguageModel.load(dir, mo.backend(), List.of()), null));
        for (var e : adapters.entrySet())
            served.add(new OpenAiServer.ServedModel(e.getKey(), VisionLanguageModel.load(dir, mo.backend(), List.of(e.getValue())), base));
        if (!isLoopback(host) && cfg.apiKey() == null)
            System.err.println("vlm4j serve: warning: listening on " + host + " without --api-key");
        OpenAiServer server = new OpenAiServer(served, cfg).start();
        System.err.println("vlm4j serve: http://" + host + ":" + server.port() + "/v1 serving " + String.join(", ", server.engines().keySet()));
        CountDownLatch stop = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            server.close();
            stop.countDown();
        }));
        stop.await();
        return 0;
    }

    private static boolean isLoopback(String host) {
        return host.equals("127.0.0.1") || host.equals("localhost") || host.equals("::1") || host.startsWith("127.");
    }
}
