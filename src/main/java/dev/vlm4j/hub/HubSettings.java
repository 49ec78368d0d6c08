package dev.vlm4j.hub;

import java.nio.file.Path;
import java.util.Locale;
import java.util.Map;

/**
 * Where and how to download: the hub (Hugging Face or ModelScope), its endpoint, an access token, the Hugging Face
 * cache folder and offline mode. {@link #fromEnvironment} reads the variables Python tools read: {@code HF_ENDPOINT},
 * {@code HF_TOKEN}, {@code HF_HUB_CACHE} / {@code HF_HOME}, {@code HF_HUB_OFFLINE}; {@code MODELSCOPE_DOMAIN},
 * {@code MODELSCOPE_API_TOKEN}, {@code MODELSCOPE_ENDPOINT}.
 */
public record HubSettings(Source source, String endpoint, String token, Path cacheRoot, boolean offline, boolean progress) {
    /** The hub's URL layout. */
    public enum Source {
        HUGGINGFACE, MODELSCOPE;

        public static Source parse(String s) {
            return switch (s.toLowerCase(Locale.ROOT)) {
                case "huggingface", "hf" -> HUGGINGFACE;
                case "modelscope", "ms" -> MODELSCOPE;
                default -> throw new IllegalArgumentException("unknown hub source '" + s + "' (huggingface or modelscope)");
            };
        }
    }

    public HubSettings {
        while (endpoint.endsWith("/")) endpoint = endpoint.substring(0, endpoint.length() - 1);
    }

    /** Settings for {@code source} from the given environment variables. */
    public static HubSettings fromEnvironment(Source source, Map<String, String> env) {
        String endpoint, token;
        if (source == Source.HUGGINGFACE) {
            endpoint = env.getOrDefault("HF_ENDPOINT", "https://huggingface.co");
            token = env.get("HF_TOKEN");
            if (token == null) token = env.get("HUGGING_FACE_HUB_TOKEN");
        } else {
            String domain = env.get("MODELSCOPE_DOMAIN");
            endpoint = env.getOrDefault("MODELSCOPE_ENDPOINT", domain == null ? "https://www.modelscope.cn"
                    : domain.startsWith("http") ? domain : "https://" + domain);
            token = env.get("MODELSCOPE_API_TOKEN");
        }
        Path cache;
        if (env.get("HF_HUB_CACHE") != null) cache = Path.of(env.get("HF_HUB_CACHE"));
        else if (env.get("HF_HOME") != null) cache = Path.of(env.get("HF_HOME"), "hub");
        else cache = Path.of(System.getProperty("user.home"), ".cache", "huggingface", "hub");
        boolean offline = truthy(env.get("HF_HUB_OFFLINE")) || truthy(env.get("VLM4J_OFFLINE"));
        return new HubSettings(source, endpoint, token == null || token.isBlank() ? null : token, cache, offline, true);
    }

    private static boolean truthy(String v) {
        return v != null && (v.equals("1") || v.equalsIgnoreCase("true") || v.equalsIgnoreCase("yes") || v.equalsIgnoreCase("on"));
    }

    public HubSettings withOffline(boolean o) { return new HubSettings(source, endpoint, token, cacheRoot, o, progress); }

    public HubSettings withProgress(boolean p) { return new HubSettings(source, endpoint, token, cacheRoot, offline, p); }
}
