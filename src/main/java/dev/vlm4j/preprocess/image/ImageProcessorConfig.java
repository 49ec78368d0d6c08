package dev.vlm4j.preprocess.image;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Settings of the Qwen2-VL image (or video) processor.
 * <p>
 * {@link #load(Path, Kind)} reads a model folder: {@code preprocessor_config.json} (published layout), or
 * {@code processor_config.json} (transformers 5 layout, settings nested under {@code "image_processor"} /
 * {@code "video_processor"}); for videos {@code video_preprocessor_config.json} first, falling back to the
 * image settings as transformers does. Pixel budgets come from {@code min_pixels}/{@code max_pixels}, which
 * win over {@code size: {shortest_edge, longest_edge}} (or {@code size: {min_pixels, max_pixels}}).
 *
 * @param maxTokens the most merged tokens one image or video may produce ({@code gt*gh*gw/merge^2}); 0 for no limit
 */
public record ImageProcessorConfig(double minPixels, double maxPixels, int patchSize, int temporalPatchSize,
                                   int mergeSize, double[] imageMean, double[] imageStd, boolean doResize,
                                   boolean doRescale, double rescaleFactor, boolean doNormalize, long maxTokens) {

    /** Which processor's settings to read. */
    public enum Kind { IMAGE, VIDEO }

    /** CLIP mean, the transformers default. */
    public static final double[] CLIP_MEAN = {0.48145466, 0.4578275, 0.40821073};
    /** CLIP standard deviation, the transformers default. */
    public static final double[] CLIP_STD = {0.26862954, 0.26130258, 0.27577711};
    /** transformers' image defaults: 56*56 and 28*28*1280 pixels. */
    public static final long DEFAULT_MIN_PIXELS = 56 * 56, DEFAULT_MAX_PIXELS = 28 * 28 * 1280;
    /** transformers' video defaults: 128*28*28 and 768*28*28 pixels per frame. */
    public static final long DEFAULT_VIDEO_MIN_PIXELS = 128 * 28 * 28, DEFAULT_VIDEO_MAX_PIXELS = 768 * 28 * 28;

    private static final ObjectMapper JSON = new ObjectMapper();

    public ImageProcessorConfig {
        if (patchSize <= 0 || temporalPatchSize <= 0 || mergeSize <= 0)
            throw new IllegalArgumentException("patch_size, temporal_patch_size and merge_size must be positive");
        if (imageMean.length != 3 || imageStd.length != 3)
            throw new IllegalArgumentException("image_mean and image_std need 3 values");
        if (minPixels < 0 || maxPixels <= 0 || minPixels > maxPixels)
            throw new ImageException("invalid pixel budget: min_pixels " + minPixels + ", max_pixels " + maxPixels);
        imageMean = imageMean.clone();
        imageStd = imageStd.clone();
    }

    /** transformers' defaults for {@code kind}. */
    public static ImageProcessorConfig defaults(Kind kind) {
        return kind == Kind.VIDEO
                ? new ImageProcessorConfig(DEFAULT_VIDEO_MIN_PIXELS, DEFAULT_VIDEO_MAX_PIXELS, 14, 2, 2, CLIP_MEAN, CLIP_STD,
                true, true, 1 / 255.0, true, 0)
                : new ImageProcessorConfig(DEFAULT_MIN_PIXELS, DEFAULT_MAX_PIXELS, 14, 2, 2, CLIP_MEAN, CLIP_STD,
                true, true, 1 / 255.0, true, 0);
    }

    /** The side length the resized image's sides are multiples of: {@code patchSize * mergeSize}. */
    public int factor() { return patchSize * mergeSize; }

    /** Values per patch row: {@code 3 * temporalPatchSize * patchSize^2} (1176 for Qwen2.5-VL). */
    public int patchDim() { return 3 * temporalPatchSize * patchSize * patchSize; }

    /** A copy with other pixel budgets; a null argument keeps the current value. */
    public ImageProcessorConfig withPixels(Number minPixels, Number maxPixels) {
        return new ImageProcessorConfig(minPixels == null ? this.minPixels : minPixels.doubleValue(),
                maxPixels == null ? this.maxPixels : maxPixels.doubleValue(), patchSize, temporalPatchSize, mergeSize,
                imageMean, imageStd, doResize, doRescale, rescaleFactor, doNormalize, maxTokens);
    }

    /** A copy with another token limit (0: none). */
    public ImageProcessorConfig withMaxTokens(long maxTokens) {
        if (maxTokens < 0) throw new IllegalArgumentException("max tokens must be >= 0, got " + maxTokens);
        return new ImageProcessorConfig(minPixels, maxPixels, patchSize, temporalPatchSize, mergeSize, imageMean,
                imageStd, doResize, doRescale, rescaleFactor, doNormalize, maxTokens);
    }

    /**
     * A copy with the pixel budgets that ms-swift reads from the environment: {@code MIN_PIXELS} /
     * {@code MAX_PIXELS} for images, {@code VIDEO_MIN_PIXELS} / {@code VIDEO_MAX_PIXELS} for videos.
     * Values are integers or products such as {@code 1280*28*28}.
     */
    public ImageProcessorConfig withEnv(Map<String, String> env, Kind kind) {
        String prefix = kind == Kind.VIDEO ? "VIDEO_" : "";
        Long min = envLong(env, prefix + "MIN_PIXELS"), max = envLong(env, prefix + "MAX_PIXELS");
        return withPixels(min, max);
    }

    /** Parses an environment value such as {@code 1003520} or {@code 1280*28*28}; null when unset. */
    public static Long envLong(Map<String, String> env, String name) {
        String v = env.get(name);
        if (v == null || v.isBlank()) return null;
        try {
            long r = 1;
            for (String part : v.trim().split("\\*")) r = Math.multiplyExact(r, (long) Double.parseDouble(part.trim()));
            return r;
        } catch (RuntimeException e) {
            throw new ImageException("environment variable " + name + "=" + v + " is not an integer");
        }
    }

    /** Reads the settings of {@code kind} from the model folder {@code dir} (defaults for what is absent). */
    public static ImageProcessorConfig load(Path dir, Kind kind) {
        JsonNode node = null;
        if (kind == Kind.VIDEO) node = read(dir.resolve("video_preprocessor_config.json"), null);
        if (node == null) {
            JsonNode proc = read(dir.resolve("processor_config.json"), null);
            if (proc != null) {
                String key = kind == Kind.VIDEO ? "video_processor" : "image_processor";
                if (proc.has(key)) node = proc.get(key);
                else if (kind == Kind.VIDEO && proc.has("image_processor")) node = proc.get("image_processor");
            }
        }
        if (node == null) node = read(dir.resolve("preprocessor_config.json"), null);
        if (node == null && kind == Kind.IMAGE) {
            JsonNode proc = read(dir.resolve("processor_config.json"), null);
            if (proc != null && proc.has("patch_size")) node = proc;
        }
        if (node == null)
            throw new ImageException("no preprocessor_config.json or processor_config.json in " + dir);
        return fromJson(node, kind, dir.toString());
    }

    /** Parses one processor settings object. */
    public static ImageProcessorConfig fromJson(JsonNode n, Kind kind, String source) {
        ImageProcessorConfig d = defaults(kind);
        double min = d.minPixels, max = d.maxPixels;
        JsonNode size = n.get("size");
        if (size != null && size.isObject()) {
            if (size.has("shortest_edge")) min = size.get("shortest_edge").asDouble();
            if (size.has("longest_edge")) max = size.get("longest_edge").asDouble();
            if (size.has("min_pixels")) min = size.get("min_pixels").asDouble();
            if (size.has("max_pixels")) max = size.get("max_pixels").asDouble();
        }
        if (n.hasNonNull("min_pixels")) min = n.get("min_pixels").asDouble();
        if (n.hasNonNull("max_pixels")) max = n.get("max_pixels").asDouble();
        int resample = n.path("resample").asInt(3);
        if (resample != 3)
            throw new ImageException(source + ": resample " + resample + " is not supported (only 3, bicubic)");
        return new ImageProcessorConfig(min, max, n.path("patch_size").asInt(d.patchSize),
                n.path("temporal_patch_size").asInt(d.temporalPatchSize), n.path("merge_size").asInt(d.mergeSize),
                triple(n.get("image_mean"), CLIP_MEAN, source), triple(n.get("image_std"), CLIP_STD, source),
                n.path("do_resize").asBoolean(true), n.path("do_rescale").asBoolean(true),
                n.path("rescale_factor").asDouble(1 / 255.0), n.path("do_normalize").asBoolean(true), 0);
    }

    private static double[] triple(JsonNode n, double[] dflt, String source) {
        if (n == null || n.isNull()) return dflt;
        if (n.isNumber()) return new double[]{n.asDouble(), n.asDouble(), n.asDouble()};
        if (!n.isArray() || n.size() != 3) throw new ImageException(source + ": expected 3 values, got " + n);
        return new double[]{n.get(0).asDouble(), n.get(1).asDouble(), n.get(2).asDouble()};
    }

    private static JsonNode read(Path file, JsonNode dflt) {
        if (!Files.isRegularFile(file)) return dflt;
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new ImageException("cannot parse " + file + ": " + e.getMessage(), e);
        }
    }
}
