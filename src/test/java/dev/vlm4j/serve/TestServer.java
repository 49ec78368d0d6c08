package dev.vlm4j.serve;

import dev.vlm4j.Fixtures;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.cpu.CpuBackend;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;

/** Starts {@link OpenAiServer} on 127.0.0.1 (any free port) over the tiny fixture model, for tests. */
final class TestServer {
    private TestServer() {}

    /**
     * A copy of the tiny model folder (files linked, not copied) whose chat template opens a think block after the
     * assistant header unless {@code enable_thinking} is false, as MiMo-VL / Qwen3 templates do.
     */
    static Path thinkingModel(Path tmp) {
        try {
            Path src = Fixtures.tinyModel();
            Path dir = Files.createDirectories(tmp.resolve("tiny-thinking"));
            try (var files = Files.list(src)) {
                for (Path f : (Iterable<Path>) files::iterator) {
                    if (f.getFileName().toString().equals("chat_template.json")) continue;
                    Files.createSymbolicLink(dir.resolve(f.getFileName()), f);
                }
            }
            var json = new com.fasterxml.jackson.databind.ObjectMapper();
            var tpl = (com.fasterxml.jackson.databind.node.ObjectNode) json.readTree(src.resolve("chat_template.json").toFile());
            String t = tpl.get("chat_template").asText();
            String head = "{% if add_generation_prompt %}<|im_start|>assistant\n";
            if (!t.contains(head)) throw new IllegalStateException("unexpected template tail");
            t = t.replace(head, head + "{% if enable_thinking is not defined or enable_thinking %}<think>\n{% endif %}");
            tpl.put("chat_template", t);
            json.writeValue(dir.resolve("chat_template.json").toFile(), tpl);
            return dir;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Serves {@code base} as "tiny" and, when {@code withAdapter}, the fixture LoRA as "tiny-lora". */
    static OpenAiServer start(Path modelDir, ServeConfig cfg, boolean withAdapter) {
        List<OpenAiServer.ServedModel> served = new ArrayList<>();
        served.add(new OpenAiServer.ServedModel("tiny", VisionLanguageModel.load(modelDir, new CpuBackend(), List.of()), null));
        if (withAdapter)
            served.add(new OpenAiServer.ServedModel("tiny-lora", VisionLanguageModel.load(modelDir, new CpuBackend(),
                    List.of(Fixtures.cases().resolve("lora"))), "tiny"));
        return new OpenAiServer(served, cfg.withPort(0)).start();
    }

    static final HttpClient HTTP = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(10)).build();

    /** POSTs {@code body} to {@code path}; returns the response (body as a string). */
    static HttpResponse<String> post(OpenAiServer s, String path, String body, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path))
                .timeout(Duration.ofSeconds(120)).header("Content-Type", "application/json")
                .POST(HttpRequest.BodyPublishers.ofString(body));
        if (key != null) b.header("Authorization", "Bearer " + key);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }

    static HttpResponse<String> get(OpenAiServer s, String path, String key) throws Exception {
        HttpRequest.Builder b = HttpRequest.newBuilder(URI.create("http://127.0.0.1:" + s.port() + path)).timeout(Duration.ofSeconds(30)).GET();
        if (key != null) b.header("Authorization", "Bearer " + key);
        return HTTP.send(b.build(), HttpResponse.BodyHandlers.ofString());
    }
}
