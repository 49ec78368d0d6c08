package dev.vlm4j.preprocess.image;

import dev.vlm4j.tensor.Tensor;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Qwen2-VL's image processor: smart-resize to multiples of {@code patchSize * mergeSize} within the pixel
 * budget, antialiased bicubic resampling (bit-exact with torchvision, or with Pillow), rescale and normalise, then flatten into patch rows
 * (the image is duplicated to {@code temporalPatchSize} frames). Matches transformers' {@code Qwen2VLImageProcessor}.
 * <p>
 * Pixel budgets come from the model's config, overridden by the environment ({@code MIN_PIXELS} /
 * {@code MAX_PIXELS}, as ms-swift reads them) when created with {@link #fromModelDir(Path)}, and per call.
 */
public final class ImageProcessor {
    private final ImageProcessorConfig config;
    private final BicubicResampler.Mode resampling;

    public ImageProcessor(ImageProcessorConfig config) {
        this(config, BicubicResampler.Mode.TORCHVISION);
    }

    /** A processor resampling as {@code resampling} does (torchvision, as transformers 5, by default). */
    public ImageProcessor(ImageProcessorConfig config, BicubicResampler.Mode resampling) {
        this.config = config;
        this.resampling = resampling;
    }

    /** The processor configured from a model folder, with the process environment's pixel overrides applied. */
    public static ImageProcessor fromModelDir(Path modelDir) {
        return fromModelDir(modelDir, System.getenv());
    }

    /** The processor configured from a model folder, with {@code env}'s pixel overrides applied. */
    public static ImageProcessor fromModelDir(Path modelDir, Map<String, String> env) {
        var kind = ImageProcessorConfig.Kind.IMAGE;
        return new ImageProcessor(ImageProcessorConfig.load(modelDir, kind).withEnv(env, kind));
    }

    public ImageProcessorConfig config() { return config; }

    /** A processor with another per-image token limit (0: none). */
    public ImageProcessor withMaxTokens(long maxTokens) {
        return new ImageProcessor(config.withMaxTokens(maxTokens), resampling);
    }

    /** A processor with another resampling implementation. */
    public ImageProcessor withResampling(BicubicResampler.Mode mode) {
        return new ImageProcessor(config, mode);
    }

    /** The size the image is resized to under the configured budget. */
    public SmartResize.Size targetSize(int height, int width) {
        return targetSize(height, width, config);
    }

    private static SmartResize.Size targetSize(int height, int width, ImageProcessorConfig cfg) {
        if (!cfg.doResize()) return new SmartResize.Size(height, width);
        return SmartResize.resize(height, width, cfg.factor(), cfg.minPixels(), cfg.maxPixels());
    }

    /** Processes one image with the configured budget. */
    public ProcessedImage process(RgbImage image) {
        return process(image, null, null);
    }

    /** Processes one image; non-null {@code minPixels} / {@code maxPixels} override the configured budget. */
    public ProcessedImage process(RgbImage image, Long minPixels, Long maxPixels) {
        ImageProcessorConfig cfg = config.withPixels(minPixels, maxPixels);
        SmartResize.Size size = targetSize(image.height(), image.width(), cfg);
        RgbImage resized = BicubicResampler.resize(image, size.width(), size.height(), resampling);
        checkTokens(size, 1, cfg, "image " + image.width() + "x" + image.height());
        PatchFlattener.Result r = PatchFlattener.flatten(List.of(resized), cfg);
        return new ProcessedImage(Tensor.of(r.values(), r.rows(), r.cols()), r.gridThw());
    }

    /** Loads and processes one image file. */
    public ProcessedImage process(Path file) {
        return process(ImageLoader.load(file));
    }

    /** Processes several images and concatenates their patch rows (in order). */
    public ProcessedImages processAll(List<RgbImage> images) {
        List<ProcessedImage> out = new ArrayList<>(images.size());
        for (RgbImage im : images) out.add(process(im));
        return ProcessedImages.concat(out);
    }

    /**
     * Throws when {@code frames} frames of {@code size} give more merged tokens than {@code cfg.maxTokens()}.
     */
    public static void checkTokens(SmartResize.Size size, int frames, ImageProcessorConfig cfg, String what) {
        if (cfg.maxTokens() <= 0) return;
        int p = cfg.patchSize(), m = cfg.mergeSize(), t = cfg.temporalPatchSize();
        long gt = (frames + t - 1) / t;
        long tokens = gt * (size.height() / p) * (size.width() / p) / ((long) m * m);
        if (tokens > cfg.maxTokens())
            throw new ImageException(what + " resized to " + size.width() + "x" + size.height() + " needs " + tokens
                    + " tokens, more than the limit of " + cfg.maxTokens()
                    + " (lower max_pixels or raise the token limit)");
    }
}
