package dev.vlm4j.preprocess.template;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A Hugging Face chat template, rendered the way transformers' {@code apply_chat_template} renders it.
 *
 * <p>{@link #load(Path)} finds the template of a model folder ({@code chat_template.jinja}, then
 * {@code chat_template.json}, then {@code tokenizer_config.json}) and picks up the tokenizer's special tokens
 * ({@code bos_token}, {@code eos_token}, {@code pad_token}, {@code unk_token}) as template variables.
 * Like transformers, {@code tools} and {@code documents} default to {@code None} and
 * {@code add_generation_prompt} to {@code False}; every other keyword argument is passed through.
 */
public final class ChatTemplate {
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final List<String> SPECIAL_TOKENS = List.of("bos_token", "eos_token", "unk_token", "pad_token");

    private final String source;
    private final JinjaInterpreter compiled;
    private final Map<String, Object> defaults;

    private ChatTemplate(String source, Map<String, Object> defaults) {
        this.source = source;
        this.compiled = JinjaInterpreter.compile(source);
        this.defaults = Map.copyOf(defaults);
    }

    /** A template from its Jinja source, without special-token variables. */
    public static ChatTemplate fromString(String source) {
        return new ChatTemplate(source, Map.of());
    }

    /**
     * Loads the chat template of a model folder, in transformers' order: {@code chat_template.jinja},
     * {@code chat_template.json} ({@code "chat_template"}), {@code tokenizer_config.json} ({@code "chat_template"}:
     * a string, or a list of {@code {name, template}} of which {@code "default"} is used).
     *
     * @throws TemplateException when the folder has no chat template or it does not parse
     */
    public static ChatTemplate load(Path modelDir) {
        Map<String, Object> tokens = specialTokens(modelDir);
        Path jinja = modelDir.resolve("chat_template.jinja");
        if (Files.isRegularFile(jinja)) return new ChatTemplate(read(jinja), tokens);
        Path json = modelDir.resolve("chat_template.json");
        if (Files.isRegularFile(json)) {
            String t = templateField(readJson(json), json);
            if (t != null) return new ChatTemplate(t, tokens);
        }
        Path config = modelDir.resolve("tokenizer_config.json");
        if (Files.isRegularFile(config)) {
            String t = templateField(readJson(config), config);
            if (t != null) return new ChatTemplate(t, tokens);
        }
        throw new TemplateException("no chat template found in " + modelDir
                + " (looked for chat_template.jinja, chat_template.json and a \"chat_template\" in tokenizer_config.json)");
    }

    /**
     * Loads a template file: a {@code .json} file's {@code "chat_template"} field, or any other file's text as Jinja.
     * Special tokens are not set (use {@link #withVariables(Map)}).
     */
    public static ChatTemplate fromFile(Path file) {
        if (file.getFileName().toString().endsWith(".json")) {
            String t = templateField(readJson(file), file);
            if (t == null) throw new TemplateException("no \"chat_template\" field in " + file);
            return fromString(t);
        }
        return fromString(read(file));
    }

    /** The special tokens ({@code bos_token}, ...) a model folder's {@code tokenizer_config.json} defines (non-null ones). */
    public static Map<String, Object> specialTokens(Path modelDir) {
        Map<String, Object> out = new LinkedHashMap<>();
        Path config = modelDir.resolve("tokenizer_config.json");
        if (!Files.isRegularFile(config)) return out;
        JsonNode root = readJson(config);
        for (String name : SPECIAL_TOKENS) {
            JsonNode v = root.get(name);
            if (v == null || v.isNull()) continue;
            if (v.isTextual()) out.put(name, v.textValue());
            else if (v.isObject() && v.path("content").isTextual()) out.put(name, v.path("content").textValue());
        }
        return out;
    }

    /** A copy of this template with extra default variables (overridden by the keyword arguments of a render). */
    public ChatTemplate withVariables(Map<String, ?> variables) {
        Map<String, Object> merged = new LinkedHashMap<>(defaults);
        merged.putAll(variables);
        return new ChatTemplate(source, merged);
    }

    /** The Jinja source. */
    public String source() {
        return source;
    }

    /** The default variables (special tokens) passed to every render. */
    public Map<String, Object> variables() {
        return defaults;
    }

    /**
     * Renders {@code messages} with keyword arguments such as {@code add_generation_prompt}, {@code add_vision_id},
     * {@code tools}, {@code enable_thinking}. Values may be plain Java (Map/List/String/Number/Boolean/null) or
     * Jackson {@link JsonNode}s.
     *
     * @throws TemplateException when the template fails (including {@code raise_exception(...)})
     */
    public String render(List<? extends Map<String, ?>> messages, Map<String, ?> kwargs) {
        Map<String, Object> vars = new LinkedHashMap<>(defaults);
        vars.put("tools", null);
        vars.put("documents", null);
        vars.put("add_generation_prompt", false);
        if (kwargs != null) vars.putAll(kwargs);
        vars.put("messages", messages);
        return compiled.render(vars);
    }

    /** Renders a whole {@code inputs} object: {@code messages} plus keyword arguments (the fixture row format). */
    public String render(Map<String, ?> inputs) {
        Map<String, Object> kwargs = new LinkedHashMap<>(inputs);
        Object messages = kwargs.remove("messages");
        if (!(messages instanceof List<?> list)) throw new TemplateException("inputs have no \"messages\" list");
        @SuppressWarnings("unchecked")
        List<? extends Map<String, ?>> msgs = (List<? extends Map<String, ?>>) list;
        return render(msgs, kwargs);
    }

    /** Renders a Jackson {@code inputs} object: {@code messages} plus keyword arguments. */
    public String render(JsonNode inputs) {
        @SuppressWarnings("unchecked")
        Map<String, Object> map = (Map<String, Object>) PyValues.fromJava(inputs);
        return render(map);
    }

    private static String templateField(JsonNode root, Path file) {
        JsonNode t = root.get("chat_template");
        if (t == null || t.isNull()) return null;
        if (t.isTextual()) return t.textValue();
        if (t.isArray()) {
            for (JsonNode e : t) {
                if ("default".equals(e.path("name").asText()) && e.path("template").isTextual()) return e.path("template").textValue();
            }
            throw new TemplateException("\"chat_template\" in " + file + " has no template named \"default\"");
        }
        throw new TemplateException("\"chat_template\" in " + file + " is neither a string nor a list");
    }

    private static String read(Path p) {
        try {
            return Files.readString(p);
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + p, e);
        }
    }

    private static JsonNode readJson(Path p) {
        try {
            return JSON.readTree(p.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException("cannot read " + p, e);
        }
    }
}
