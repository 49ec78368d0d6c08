package dev.vlm4j.serve;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.StreamReadConstraints;
import com.fasterxml.jackson.core.exc.StreamConstraintsException;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.api.ChatOptions;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.generate.SamplingOptions;
import dev.vlm4j.preprocess.image.ImageException;
import io.javalin.Javalin;
import io.javalin.http.Context;
import io.javalin.http.HttpResponseException;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.util.*;
import java.util.concurrent.BlockingQueue;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;

/**
 * An OpenAI-compatible HTTP server (Javalin on Jetty): {@code POST /v1/chat/completions} (streamed as server-sent
 * events or whole), {@code GET /v1/models}, {@code GET /health}, {@code GET /metrics}. Each served model name (the
 * base model, and one per LoRA adapter, merged into its own copy of the weights) has its own continuous-batching
 * {@link Engine}. Errors are OpenAI error JSON with a 4xx/5xx status, never a stack trace. A request whose client
 * disconnects is cancelled and its sequences leave the batch (freeing their KV caches) at the next engine step: a streamed
 * one when a write fails, a whole one when its connection reads end of stream ({@link ClientWatch}); both count in
 * {@code vlm4j_cancelled_requests_total} and as status 499 in {@code vlm4j_requests_total}.
 */
public final class OpenAiServer implements AutoCloseable {
    /** A model served under {@code name}; {@code parent} is the base model's name for adapters, else null. */
    public record ServedModel(String name, VisionLanguageModel vlm, String parent) {}

    private final ServeConfig cfg;
    private final ObjectMapper json;
    private final ServeMetrics metrics = new ServeMetrics();
    private final Map<String, Engine> engines = new LinkedHashMap<>();
    private final Map<String, ServedModel> models = new LinkedHashMap<>();
    private final byte[] keyHash;
    private final long startedAt = System.currentTimeMillis() / 1000;
    private Javalin app;

    public OpenAiServer(List<ServedModel> served, ServeConfig cfg) {
        if (served.isEmpty()) throw new IllegalArgumentException("no model to serve");
        this.cfg = cfg;
        this.json = new ObjectMapper(JsonFactory.builder()
                .streamReadConstraints(StreamReadConstraints.builder().maxNestingDepth(cfg.maxJsonDepth()).build()).build());
        this.keyHash = cfg.apiKey() == null ? null : sha256(cfg.apiKey());
        for (ServedModel m : served) {
            if (models.putIfAbsent(m.name(), m) != null) throw new IllegalArgumentException("model name " + m.name() + " is used twice");
            engines.put(m.name(), new Engine(m.name(), m.vlm(), cfg, metrics));
        }
    }

    /** Starts listening; returns this. */
    public OpenAiServer start() {
        app = Javalin.create(c -> {
            c.startup.showJavalinBanner = false;
            c.startup.showOldJavalinVersionWarning = false;
            c.jetty.host = cfg.host();
            c.jetty.port = cfg.port();
            c.http.maxRequestSize = cfg.maxBodyBytes();
            c.concurrency.useVirtualThreads = true;
            c.routes.before("/v1/*", this::authorize);
            c.routes.get("/health", ctx -> ctx.json(Map.of("status", "ok")));
            c.routes.get("/metrics", ctx -> ctx.contentType(ServeMetrics.contentType()).result(metrics.scrape()));
            c.routes.get("/v1/models", this::listModels);
            c.routes.post("/v1/chat/completions", this::chat);
            c.routes.exception(ApiException.class, (e, ctx) -> sendError(ctx, e));
            c.routes.exception(HttpResponseException.class, (e, ctx) -> sendError(ctx, fromStatus(e.getStatus())));
            c.routes.exception(Exception.class, (e, ctx) ->
                    sendError(ctx, new ApiException(500, "server_error", "internal_error", null, "internal server error")));
            c.routes.error(404, ctx -> {
                if (!ctx.res().isCommitted() && ctx.result() == null)
                    sendError(ctx, new ApiException(404, "invalid_request_error", "not_found", null, "no route " + ctx.method() + " " + ctx.path()));
            });
            c.routes.error(405, ctx -> sendError(ctx, new ApiException(405, "invalid_request_error", "method_not_allowed", null, "method not allowed")));
        });
        app.start();
        return this;
    }

    /** The bound port. */
    public int port() { return app.port(); }

    /** The engines by served model name. */
    public Map<String, Engine> engines() { return Collections.unmodifiableMap(engines); }

    public ServeMetrics metrics() { return metrics; }

    private static ApiException fromStatus(int status) {
        return switch (status) {
            case 413 -> new ApiException(413, "invalid_request_error", "request_too_large", null, "the request body is too large");
            case 404 -> new ApiException(404, "invalid_request_error", "not_found", null, "not found");
            case 405 -> new ApiException(405, "invalid_request_error", "method_not_allowed", null, "method not allowed");
            default -> status >= 500 ? new ApiException(status, "server_error", "internal_error", null, "internal server error")
                    : new ApiException(status, "invalid_request_error", "invalid_request", null, "invalid request");
        };
    }

    private void sendError(Context ctx, ApiException e) {
        ctx.status(e.status()).contentType("application/json").result(write(ChatResponses.error(json, e)));
    }

    private void authorize(Context ctx) {
        if (keyHash == null) return;
        String h = ctx.header("Authorization");
        String given = h != null && h.regionMatches(true, 0, "Bearer ", 0, 7) ? h.substring(7).trim() : "";
        // Constant time: compare fixed-length digests with MessageDigest.isEqual.
        if (!MessageDigest.isEqual(keyHash, sha256(given)) || given.isEmpty())
            throw new ApiException(401, "invalid_request_error", "invalid_api_key", null, "missing or invalid API key");
    }

    private static byte[] sha256(String s) {
        try {
            return MessageDigest.getInstance("SHA-256").digest(s.getBytes(StandardCharsets.UTF_8));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }

    private void listModels(Context ctx) {
        ObjectNode o = json.createObjectNode();
        o.put("object", "list");
        ArrayNode data = o.putArray("data");
        for (ServedModel m : models.values()) {
            ObjectNode e = data.addObject();
            e.put("id", m.name());
            e.put("object", "model");
            e.put("created", startedAt);
            e.put("owned_by", "vlm4j");
            e.put("root", m.parent() == null ? m.name() : m.parent());
            if (m.parent() == null) e.putNull("parent"); else e.put("parent", m.parent());
        }
        ctx.contentType("application/json").result(write(o));
    }

    /** Upper bound on the bytes of an oversized body read and discarded before answering 413. */
    private static final long DRAIN_LIMIT = 64L << 20;

    /**
     * Reads and discards (a bounded amount of) an oversized body so the client, still sending, receives the 413
     * instead of a connection reset; beyond {@link #DRAIN_LIMIT} the connection is simply closed.
     */
    private static void drain(InputStream in) {
        byte[] buf = new byte[64 << 10];
        long left = DRAIN_LIMIT;
        try {
            int n;
            while (left > 0 && (n = in.read(buf, 0, (int) Math.min(buf.length, left))) > 0) left -= n;
        } catch (IOException ignored) {
            // the client went away; nothing to answer
        }
    }

    private JsonNode readJson(Context ctx) {
        long declared = ctx.req().getContentLengthLong();
        byte[] body;
        try (InputStream in = ctx.req().getInputStream()) {
            if (declared > cfg.maxBodyBytes()) {
                drain(in);
                throw fromStatus(413);
            }
            body = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, cfg.maxBodyBytes() + 1));
            if (body.length > cfg.maxBodyBytes()) {
                drain(in);
                throw fromStatus(413);
            }
        } catch (IOException e) {
            throw ApiException.badRequest(null, "the request body could not be read");
        }
        try {
            return json.readTree(body);
        } catch (StreamConstraintsException e) {
            throw ApiException.badRequest(null, "the JSON is nested too deeply (at most " + cfg.maxJsonDepth() + " levels)");
        } catch (JsonProcessingException e) {
            throw ApiException.badRequest(null, "the request body is not valid JSON");
        } catch (IOException e) {
            throw ApiException.badRequest(null, "the request body could not be read");
        }
    }

    private Engine engineFor(String model) {
        if (model == null) return engines.values().iterator().next();
        Engine e = engines.get(model);
        if (e == null) throw new ApiException(404, "invalid_request_error", "model_not_found", "model",
                "the model '" + model + "' does not exist (see GET /v1/models)");
        return e;
    }

    /** Listener events, handed from the engine thread to the request's thread. */
    private sealed interface Event permits Delta, Finish, Failure {}
    private record Delta(int choice, String reasoning, String content, List<Engine.TokenLogprob> lp) implements Event {}
    private record Finish(int choice, String reason, int prompt, int completion) implements Event {}
    private record Failure(int choice, ApiException error) implements Event {}

    private void chat(Context ctx) throws IOException {
        JsonNode root = readJson(ctx);
        MediaResolver media = new MediaResolver(cfg);
        ChatRequest req;
        Engine engine;
        VisionLanguageModel.Prompt prompt;
        try {
            req = ChatRequest.parse(root, cfg, media);
            engine = engineFor(req.model());
            ChatOptions opts = new ChatOptions(SamplingOptions.defaults(), req.enableThinking(), null, null, req.templateKwargs());
            try {
                prompt = engine.model().buildPrompt(req.messages(), opts);
            } catch (ImageException e) {
                throw ApiException.unprocessable("messages", "a media item could not be processed");
            } catch (ApiException e) {
                throw e;
            } catch (RuntimeException e) {
                throw ApiException.badRequest("messages", "the messages could not be turned into a prompt: " + e.getMessage());
            }
        } finally {
            media.cleanup();
        }
        if (prompt.videos() != null) {
            int frames = 0;
            int tp = engine.model().videoProcessor().config().temporalPatchSize();
            for (int[] g : prompt.videos().grids()) frames = Math.max(frames, g[0] * tp);
            if (frames > cfg.maxVideoFrames())
                throw ApiException.unprocessable("messages", "a video has " + frames + " sampled frames; at most " + cfg.maxVideoFrames());
        }
        int maxNew = req.maxTokens() != null ? req.maxTokens() : cfg.maxTokens();
        SamplingOptions base = SamplingOptions.defaults().withGenerationConfig(engine.model().generationConfig());
        SamplingOptions sampling = req.sampling(base, maxNew);
        boolean startInReasoning = prompt.text().endsWith("<think>\n") || prompt.text().endsWith("<think>");
        BlockingQueue<Event> events = new LinkedBlockingQueue<>();
        Engine.Listener listener = new Engine.Listener() {
            public void onDelta(int c, String r, String t, List<Engine.TokenLogprob> lp) { events.add(new Delta(c, r, t, lp)); }
            public void onFinish(int c, String reason, int p, int n) { events.add(new Finish(c, reason, p, n)); }
            public void onError(int c, ApiException e) { events.add(new Failure(c, e)); }
        };
        Engine.Job job = new Engine.Job(prompt, sampling, req.n(), req.topLogprobs(), startInReasoning,
                cfg.requestTimeout().toNanos(), listener);
        Engine.Handle handle;
        try {
            handle = engine.submit(job);
        } catch (ApiException e) {
            metrics.requests.labelValues(engine.name(), String.valueOf(e.status())).inc();
            throw e;
        }
        String id = "chatcmpl-" + UUID.randomUUID().toString().replace("-", "");
        ChatResponses out = new ChatResponses(json, id, engine.name(), System.currentTimeMillis() / 1000);
        try {
            if (req.stream()) stream(ctx, req, out, events, handle, engine.name());
            else whole(ctx, req, out, events, handle, engine.name());
        } catch (InterruptedException e) {
            handle.cancel();
            Thread.currentThread().interrupt();
        }
    }

    /** Takes the next event, waiting at most one second; null when none came. */
    private static Event next(BlockingQueue<Event> q) throws InterruptedException {
        return q.poll(1, TimeUnit.SECONDS);
    }

    /** How often a non-streaming request's thread looks whether its client went (the watch cancels the job at once). */
    private static final long WATCH_MILLIS = 100;

    private void whole(Context ctx, ChatRequest req, ChatResponses out, BlockingQueue<Event> events, Engine.Handle handle,
                       String model) throws InterruptedException {
        int n = req.n();
        StringBuilder[] reasoning = new StringBuilder[n], content = new StringBuilder[n];
        List<List<Engine.TokenLogprob>> lps = new ArrayList<>();
        String[] finish = new String[n];
        for (int i = 0; i < n; i++) {
            reasoning[i] = new StringBuilder();
            content[i] = new StringBuilder();
            lps.add(new ArrayList<>());
        }
        int left = n, prompt = 0, completion = 0;
        ApiException failure = null;
        ClientWatch watch = ClientWatch.start(ctx.req(), handle::cancel);
        try {
            while (left > 0) {
                Event e = events.poll(WATCH_MILLIS, TimeUnit.MILLISECONDS);
                if (watch.gone()) {
                    // The client went away: the watch cancelled the job (the finally below does too), which frees the
                    // sequences' KV caches at the next engine step.
                    metrics.cancelled.labelValues(model).inc();
                    metrics.requests.labelValues(model, "499").inc();
                    return;
                }
                switch (e) {
                    case null -> { }
                    case Delta d -> {
                        reasoning[d.choice()].append(d.reasoning());
                        content[d.choice()].append(d.content());
                        lps.get(d.choice()).addAll(d.lp());
                    }
                    case Finish f -> {
                        finish[f.choice()] = f.reason();
                        prompt = f.prompt();
                        completion += f.completion();
                        left--;
                    }
                    case Failure f -> {
                        if (failure == null) failure = f.error();
                        left--;
                    }
                }
            }
        } finally {
            watch.close();
            if (left > 0) handle.cancel();
        }
        if (watch.pipelined()) ctx.header("Connection", "close");
        if (failure != null) {
            handle.cancel();
            metrics.requests.labelValues(model, String.valueOf(failure.status())).inc();
            throw failure;
        }
        ObjectNode o = out.completion();
        for (int i = 0; i < n; i++)
            out.addChoice(o, i, reasoning[i].toString(), content[i].toString(), lps.get(i), req.logprobs(), finish[i]);
        ChatResponses.usage(o, prompt, completion);
        metrics.requests.labelValues(model, "200").inc();
        ctx.contentType("application/json").result(write(o));
    }

    private void stream(Context ctx, ChatRequest req, ChatResponses out, BlockingQueue<Event> events, Engine.Handle handle,
                        String model) throws InterruptedException {
        var res = ctx.res();
        res.setStatus(200);
        res.setContentType("text/event-stream; charset=utf-8");
        res.setHeader("Cache-Control", "no-cache");
        res.setHeader("X-Accel-Buffering", "no");
        int left = req.n(), prompt = 0, completion = 0;
        boolean ok = true;
        try {
            OutputStream os = res.getOutputStream();
            for (int i = 0; i < req.n(); i++) sse(os, out.deltaChunk(i, "assistant", null, "", null, false, null));
            os.flush();
            while (left > 0) {
                Event e = next(events);
                switch (e) {
                    case null -> os.write(": keep-alive\n\n".getBytes(StandardCharsets.UTF_8));
                    case Delta d -> sse(os, out.deltaChunk(d.choice(), null, d.reasoning(), d.content(), d.lp(), req.logprobs(), null));
                    case Finish f -> {
                        sse(os, out.deltaChunk(f.choice(), null, null, null, null, false, f.reason()));
                        prompt = f.prompt();
                        completion += f.completion();
                        left--;
                    }
                    case Failure f -> {
                        sse(os, ChatResponses.error(json, f.error()));
                        ok = false;
                        left--;
                    }
                }
                if (events.isEmpty()) os.flush();
            }
            if (req.includeUsage()) {
                ObjectNode u = out.chunk();
                ChatResponses.usage(u, prompt, completion);
                sse(os, u);
            }
            os.write("data: [DONE]\n\n".getBytes(StandardCharsets.UTF_8));
            os.flush();
            metrics.requests.labelValues(model, ok ? "200" : "500").inc();
        } catch (IOException e) {
            // The client went away: cancel, which frees the sequences' KV caches at the next engine step.
            handle.cancel();
            metrics.cancelled.labelValues(model).inc();
            metrics.requests.labelValues(model, "499").inc();
        } finally {
            if (left > 0) handle.cancel();
        }
    }

    private void sse(OutputStream os, ObjectNode o) throws IOException {
        os.write("data: ".getBytes(StandardCharsets.UTF_8));
        os.write(json.writeValueAsBytes(o));
        os.write("\n\n".getBytes(StandardCharsets.UTF_8));
    }

    private String write(JsonNode o) {
        try {
            return json.writeValueAsString(o);
        } catch (JsonProcessingException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Stops the HTTP server, then the engines (waiting requests get 503), then closes the models. */
    @Override
    public void close() {
        if (app != null) app.stop();
        for (Engine e : engines.values()) e.close();
        for (ServedModel m : models.values()) m.vlm().close();
    }
}
