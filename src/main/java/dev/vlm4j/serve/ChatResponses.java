package dev.vlm4j.serve;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;

import java.nio.charset.StandardCharsets;
import java.util.List;

/** OpenAI chat-completion JSON: full responses, stream chunks, usage, logprobs and errors. */
public final class ChatResponses {
    private final ObjectMapper json;
    private final String id, model;
    private final long created;

    public ChatResponses(ObjectMapper json, String id, String model, long created) {
        this.json = json;
        this.id = id;
        this.model = model;
        this.created = created;
    }

    /** {@code {"error":{...}}} for an API error. */
    public static ObjectNode error(ObjectMapper json, ApiException e) {
        ObjectNode root = json.createObjectNode();
        ObjectNode err = root.putObject("error");
        err.put("message", e.getMessage());
        err.put("type", e.type());
        if (e.param() == null) err.putNull("param"); else err.put("param", e.param());
        err.put("code", e.code());
        return root;
    }

    /** The head of a chunk: id, object, created, model, and an empty choices array. */
    public ObjectNode chunk() { return head("chat.completion.chunk"); }

    /** A chunk with one choice's delta (role / reasoning_content / content), logprobs and finish reason. */
    public ObjectNode deltaChunk(int index, String role, String reasoning, String content, List<Engine.TokenLogprob> lp,
                                 boolean withLogprobs, String finish) {
        ObjectNode o = chunk();
        ObjectNode c = ((ArrayNode) o.get("choices")).addObject();
        c.put("index", index);
        ObjectNode d = c.putObject("delta");
        if (role != null) d.put("role", role);
        if (reasoning != null && !reasoning.isEmpty()) d.put("reasoning_content", reasoning);
        if (content != null && (!content.isEmpty() || role != null)) d.put("content", content);
        if (withLogprobs && lp != null && !lp.isEmpty()) logprobs(c.putObject("logprobs"), lp);
        else c.putNull("logprobs");
        if (finish == null) c.putNull("finish_reason"); else c.put("finish_reason", finish);
        return o;
    }

    /** {@code usage}: prompt, completion and total tokens. */
    public static ObjectNode usage(ObjectNode parent, int prompt, int completion) {
        ObjectNode u = parent.putObject("usage");
        u.put("prompt_tokens", prompt);
        u.put("completion_tokens", completion);
        u.put("total_tokens", prompt + completion);
        return u;
    }

    /** The head of a full (non-streamed) response. */
    public ObjectNode completion() { return head("chat.completion"); }

    private ObjectNode head(String object) {
        ObjectNode o = json.createObjectNode();
        o.put("id", id);
        o.put("object", object);
        o.put("created", created);
        o.put("model", model);
        o.putArray("choices");
        return o;
    }

    /** Appends one finished choice to a full response. */
    public void addChoice(ObjectNode completion, int index, String reasoning, String content, List<Engine.TokenLogprob> lp,
                          boolean withLogprobs, String finish) {
        ObjectNode c = ((ArrayNode) completion.get("choices")).addObject();
        c.put("index", index);
        ObjectNode m = c.putObject("message");
        m.put("role", "assistant");
        m.put("content", content);
        if (reasoning == null || reasoning.isEmpty()) m.putNull("reasoning_content"); else m.put("reasoning_content", reasoning);
        if (withLogprobs) logprobs(c.putObject("logprobs"), lp);
        else c.putNull("logprobs");
        c.put("finish_reason", finish);
    }

    private static void logprobs(ObjectNode target, List<Engine.TokenLogprob> lp) {
        ArrayNode content = target.putArray("content");
        for (Engine.TokenLogprob t : lp) {
            ObjectNode e = entry(content.addObject(), t);
            ArrayNode top = e.putArray("top_logprobs");
            for (Engine.TokenLogprob a : t.top()) entry(top.addObject(), a);
        }
    }

    private static ObjectNode entry(ObjectNode e, Engine.TokenLogprob t) {
        e.put("token", t.token());
        e.put("logprob", t.logprob());
        ArrayNode b = e.putArray("bytes");
        for (byte x : t.token().getBytes(StandardCharsets.UTF_8)) b.add(x & 0xff);
        return e;
    }
}
