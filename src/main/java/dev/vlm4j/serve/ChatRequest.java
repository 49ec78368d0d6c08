package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.JsonNode;
import dev.vlm4j.generate.SamplingOptions;

import java.util.*;

/**
 * A validated {@code POST /v1/chat/completions} body. {@link #parse} checks every field's type and range (400 on
 * failure, naming the field) and resolves media through a {@link MediaResolver}, so {@link #messages()} holds
 * decoded images ready for the chat template. Sampling fields left out are null: the model's generation config
 * supplies them (see {@link #sampling}).
 */
public record ChatRequest(String model, List<Map<String, Object>> messages, boolean stream, boolean includeUsage, int n,
                          Integer maxTokens, Double temperature, Double topP, Integer topK, Double minP,
                          Double repetitionPenalty, Long seed, List<String> stop, boolean logprobs, int topLogprobs,
                          boolean enableThinking, Map<String, Object> templateKwargs) {

    private static final Set<String> ROLES = Set.of("system", "user", "assistant", "tool", "developer");

    /** Parses and validates a request body (already known to be JSON). */
    public static ChatRequest parse(JsonNode root, ServeConfig cfg, MediaResolver media) {
        if (root == null || !root.isObject()) throw ApiException.badRequest(null, "the request body must be a JSON object");
        String model = optString(root, "model");
        JsonNode msgs = root.get("messages");
        if (msgs == null || !msgs.isArray() || msgs.isEmpty())
            throw ApiException.badRequest("messages", "'messages' must be a non-empty array");
        List<Map<String, Object>> messages = new ArrayList<>();
        for (int i = 0; i < msgs.size(); i++) messages.add(message(msgs.get(i), "messages[" + i + "]", media));
        boolean stream = optBool(root, "stream", false);
        boolean includeUsage = false;
        JsonNode so = root.get("stream_options");
        if (so != null && !so.isNull()) {
            if (!so.isObject()) throw ApiException.badRequest("stream_options", "'stream_options' must be an object");
            includeUsage = optBool(so, "include_usage", false);
        }
        int n = optInt(root, "n", 1, 1, cfg.maxN());
        Integer maxTokens = optInt(root, "max_completion_tokens", null, 1, cfg.maxTokens());
        if (maxTokens == null) maxTokens = optInt(root, "max_tokens", null, 1, cfg.maxTokens());
        Double temperature = optDouble(root, "temperature", 0, 2);
        Double topP = optDouble(root, "top_p", 0, 1);
        if (topP != null && topP == 0) throw ApiException.badRequest("top_p", "'top_p' must be in (0, 1]");
        Integer topK = optInt(root, "top_k", null, -1, 1_000_000);
        if (topK != null && topK < 0) topK = 0;
        Double minP = optDouble(root, "min_p", 0, 1);
        Double rep = optDouble(root, "repetition_penalty", 0.01, 10);
        Long seed = null;
        JsonNode s = root.get("seed");
        if (s != null && !s.isNull()) {
            if (!s.isIntegralNumber() || !s.canConvertToLong()) throw ApiException.badRequest("seed", "'seed' must be an integer");
            seed = s.asLong();
        }
        List<String> stop = new ArrayList<>();
        JsonNode st = root.get("stop");
        if (st != null && !st.isNull()) {
            if (st.isTextual()) stop.add(st.asText());
            else if (st.isArray() && st.size() <= 4) for (JsonNode x : st) {
                if (!x.isTextual()) throw ApiException.badRequest("stop", "'stop' must be a string or an array of up to 4 strings");
                stop.add(x.asText());
            }
            else throw ApiException.badRequest("stop", "'stop' must be a string or an array of up to 4 strings");
            for (String x : stop) if (x.isEmpty()) throw ApiException.badRequest("stop", "stop strings must not be empty");
        }
        boolean logprobs = optBool(root, "logprobs", false);
        Integer top = optInt(root, "top_logprobs", null, 0, 20);
        if (top != null && !logprobs) throw ApiException.badRequest("top_logprobs", "'top_logprobs' needs 'logprobs': true");
        Map<String, Object> kwargs = new LinkedHashMap<>();
        JsonNode kw = root.get("chat_template_kwargs");
        if (kw != null && !kw.isNull()) {
            if (!kw.isObject()) throw ApiException.badRequest("chat_template_kwargs", "'chat_template_kwargs' must be an object");
            for (var e : kw.properties()) {
                JsonNode v = e.getValue();
                kwargs.put(e.getKey(), v.isBoolean() ? v.asBoolean() : v.isNumber() ? v.numberValue() : v.isTextual() ? v.asText() : null);
            }
        }
        boolean thinking = optBool(root, "enable_thinking", !(kwargs.get("enable_thinking") instanceof Boolean b) || b);
        kwargs.remove("enable_thinking");
        return new ChatRequest(model, messages, stream, includeUsage, n, maxTokens, temperature, topP, topK, minP, rep, seed,
                stop, logprobs, logprobs ? (top == null ? 0 : top) : -1, thinking, kwargs);
    }

    /** The sampling options: the request's fields over {@code base} (the model's defaults). */
    public SamplingOptions sampling(SamplingOptions base, int maxNewTokens) {
        SamplingOptions.Builder b = base.toBuilder().maxNewTokens(maxNewTokens).stop(stop).seed(seed);
        if (temperature != null) b.temperature(temperature).greedy(temperature == 0);
        if (topP != null) b.topP(topP);
        if (topK != null) b.topK(topK);
        if (minP != null) b.minP(minP);
        if (repetitionPenalty != null) b.repetitionPenalty(repetitionPenalty);
        try {
            return b.build();
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(null, e.getMessage());
        }
    }

    private static Map<String, Object> message(JsonNode m, String where, MediaResolver media) {
        if (!m.isObject()) throw ApiException.badRequest(where, where + " must be an object");
        JsonNode role = m.get("role");
        if (role == null || !role.isTextual() || !ROLES.contains(role.asText()))
            throw ApiException.badRequest(where + ".role", where + ".role must be one of " + new TreeSet<>(ROLES));
        Map<String, Object> out = new LinkedHashMap<>();
        out.put("role", role.asText().equals("developer") ? "system" : role.asText());
        JsonNode c = m.get("content");
        if (c == null || c.isNull()) out.put("content", "");
        else if (c.isTextual()) out.put("content", c.asText());
        else if (c.isArray()) {
            List<Object> parts = new ArrayList<>();
            for (int i = 0; i < c.size(); i++) parts.add(part(c.get(i), where + ".content[" + i + "]", media));
            out.put("content", parts);
        } else throw ApiException.badRequest(where + ".content", where + ".content must be a string or an array of parts");
        return out;
    }

    private static Map<String, Object> part(JsonNode p, String where, MediaResolver media) {
        if (!p.isObject() || !(p.get("type") instanceof JsonNode t) || !t.isTextual())
            throw ApiException.badRequest(where, where + " must be an object with a string 'type'");
        switch (t.asText()) {
            case "text" -> {
                JsonNode x = p.get("text");
                if (x == null || !x.isTextual()) throw ApiException.badRequest(where + ".text", where + ".text must be a string");
                return Map.of("type", "text", "text", x.asText());
            }
            case "image_url", "image" -> {
                JsonNode u = p.has("image_url") ? p.get("image_url") : p.get("image");
                if (u != null && u.isObject()) u = u.get("url");
                if (u == null || !u.isTextual()) throw ApiException.badRequest(where + ".image_url", where + ".image_url.url must be a string");
                return Map.of("type", "image", "image", media.image(u.asText(), where + ".image_url"));
            }
            case "video_url", "video" -> {
                JsonNode u = p.has("video_url") ? p.get("video_url") : p.get("video");
                if (u != null && u.isObject()) u = u.get("url");
                if (u != null && u.isArray()) {
                    List<String> frames = new ArrayList<>();
                    for (JsonNode f : u) {
                        if (!f.isTextual()) throw ApiException.badRequest(where + ".video", "video frames must be strings");
                        frames.add(media.videoFile(f.asText(), where + ".video"));
                    }
                    return Map.of("type", "video", "video", frames);
                }
                if (u == null || !u.isTextual()) throw ApiException.badRequest(where + ".video_url", where + ".video_url.url must be a string");
                return Map.of("type", "video", "video", media.videoFile(u.asText(), where + ".video_url"));
            }
            default -> throw ApiException.badRequest(where + ".type", "unsupported content part type '" + t.asText() + "'");
        }
    }

    private static String optString(JsonNode o, String k) {
        JsonNode v = o.get(k);
        if (v == null || v.isNull()) return null;
        if (!v.isTextual()) throw ApiException.badRequest(k, "'" + k + "' must be a string");
        return v.asText();
    }

    private static boolean optBool(JsonNode o, String k, boolean dflt) {
        JsonNode v = o.get(k);
        if (v == null || v.isNull()) return dflt;
        if (!v.isBoolean()) throw ApiException.badRequest(k, "'" + k + "' must be a boolean");
        return v.asBoolean();
    }

    private static Integer optInt(JsonNode o, String k, Integer dflt, int min, int max) {
        JsonNode v = o.get(k);
        if (v == null || v.isNull()) return dflt;
        if (!v.isIntegralNumber() || !v.canConvertToInt())
            throw ApiException.badRequest(k, "'" + k + "' must be an integer");
        int x = v.asInt();
        if (x < min || x > max) throw ApiException.badRequest(k, "'" + k + "' must be between " + min + " and " + max + ", got " + x);
        return x;
    }

    private static Double optDouble(JsonNode o, String k, double min, double max) {
        JsonNode v = o.get(k);
        if (v == null || v.isNull()) return null;
        if (!v.isNumber()) throw ApiException.badRequest(k, "'" + k + "' must be a number");
        double x = v.asDouble();
        if (!(x >= min && x <= max)) throw ApiException.badRequest(k, "'" + k + "' must be between " + min + " and " + max);
        return x;
    }
}
