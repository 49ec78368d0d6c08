package dev.vlm4j.preprocess.video;

import dev.vlm4j.preprocess.image.BicubicResampler;
import dev.vlm4j.preprocess.image.ImageLoader;
import dev.vlm4j.preprocess.image.ImageProcessor;
import dev.vlm4j.preprocess.image.ImageProcessorConfig;
import dev.vlm4j.preprocess.image.PatchFlattener;
import dev.vlm4j.preprocess.image.RgbImage;
import dev.vlm4j.preprocess.image.SmartResize;
import dev.vlm4j.tensor.Tensor;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Qwen2-VL's video preprocessing.
 * <ul>
 * <li>{@link #processFrames}: a video given as frames with a frame rate (as transformers' video processor
 * receives it): the frames are used as they are, smart-resized with the video processor's pixel budget,
 * padded to an even count by repeating the last; {@code second_per_grid_ts = temporal_patch_size / fps}.</li>
 * <li>{@link #processFile}: a video file, sampled as qwen-vl-utils does ({@link VideoSampling}): frame count,
 * indices {@code round(linspace(0, total-1, n))}, a per-frame pixel cap from the total budget, then the
 * processor's own budget; {@code second_per_grid_ts = temporal_patch_size / sample_fps}.</li>
 * </ul>
 */
public final class VideoProcessor {
    private final ImageProcessorConfig config;
    private final VideoSampling sampling;

    public VideoProcessor(ImageProcessorConfig config, VideoSampling sampling) {
        this.config = config;
        this.sampling = sampling;
    }

    /** Configured from a model folder and the process environment. */
    public static VideoProcessor fromModelDir(Path modelDir) {
        return fromModelDir(modelDir, System.getenv());
    }

    /**
     * Configured from a model folder's video processor settings (falling back to the image processor's), with
     * {@code env}'s overrides: {@code VIDEO_MIN_PIXELS}/{@code VIDEO_MAX_PIXELS} and the sampling variables of
     * {@link VideoSampling#fromEnv}.
     */
    public static VideoProcessor fromModelDir(Path modelDir, Map<String, String> env) {
        var kind = ImageProcessorConfig.Kind.VIDEO;
        return new VideoProcessor(ImageProcessorConfig.load(modelDir, kind).withEnv(env, kind), VideoSampling.fromEnv(env));
    }

    public ImageProcessorConfig config() { return config; }

    public VideoSampling sampling() { return sampling; }

    /** Loads frame image files and processes them as one video at {@code fps}. */
    public ProcessedVideo processFrameFiles(List<Path> frames, double fps) {
        List<RgbImage> images = new ArrayList<>(frames.size());
        for (Path p : frames) images.add(ImageLoader.load(p));
        return processFrames(images, fps);
    }

    /** Processes frames (all of one size) as one video at {@code fps}. */
    public ProcessedVideo processFrames(List<RgbImage> frames, double fps) {
        if (frames.isEmpty()) throw new VideoException("video has no frames");
        if (!(fps > 0)) throw new VideoException("fps must be positive, got " + fps);
        RgbImage first = frames.getFirst();
        SmartResize.Size size = config.doResize()
                ? SmartResize.resize(first.height(), first.width(), config.factor(), config.minPixels(), config.maxPixels())
                : new SmartResize.Size(first.height(), first.width());
        return finish(frames, size, config.temporalPatchSize() / fps, "video of " + frames.size() + " frames");
    }

    /** Decodes, samples and processes a video file. */
    public ProcessedVideo processFile(Path file) {
        VideoDecoder.Decoded d = VideoDecoder.decode(file,
                (total, fps) -> VideoSampling.frameIndices(total, sampling.frameCount(total, fps)));
        int n = d.frames().size();
        double sampleFps = VideoSampling.sampleFps(n, d.totalFrames(), d.videoFps());
        RgbImage first = d.frames().getFirst();
        int factor = config.factor();
        // qwen-vl-utils' resize (per-frame cap from the total budget), then the processor's own budget.
        SmartResize.Size s1 = SmartResize.resize(first.height(), first.width(), factor, sampling.minPixels(),
                sampling.frameMaxPixels(n));
        List<RgbImage> frames = new ArrayList<>(n);
        for (RgbImage f : d.frames()) frames.add(BicubicResampler.resize(f, s1.width(), s1.height()));
        SmartResize.Size s2 = config.doResize()
                ? SmartResize.resize(s1.height(), s1.width(), factor, config.minPixels(), config.maxPixels()) : s1;
        return finish(frames, s2, config.temporalPatchSize() / sampleFps, "video " + file);
    }

    private ProcessedVideo finish(List<RgbImage> frames, SmartResize.Size size, double secondPerGridT, String what) {
        ImageProcessor.checkTokens(size, frames.size(), config, what);
        List<RgbImage> resized = new ArrayList<>(frames.size());
        for (RgbImage f : frames) {
            if (f.width() != frames.getFirst().width() || f.height() != frames.getFirst().height())
                throw new VideoException("video frames differ in size: " + frames.getFirst().width() + "x"
                        + frames.getFirst().height() + " and " + f.width() + "x" + f.height());
            resized.add(BicubicResampler.resize(f, size.width(), size.height()));
        }
        PatchFlattener.Result r = PatchFlattener.flatten(resized, config);
        return new ProcessedVideo(Tensor.of(r.values(), r.rows(), r.cols()), r.gridThw(), secondPerGridT, frames.size());
    }
}
