package dev.vlm4j.preprocess.video;

import dev.vlm4j.preprocess.image.ImageProcessorConfig;

import java.util.Map;

/**
 * qwen-vl-utils' frame sampling and per-frame pixel budget for videos read from files
 * ({@code smart_nframes}, {@code fetch_video}).
 *
 * @param fps            frames per second to sample ({@code FPS}, default 2)
 * @param minFrames      fewest frames ({@code FPS_MIN_FRAMES}, default 4)
 * @param maxFrames      most frames ({@code FPS_MAX_FRAMES}, default 768)
 * @param minPixels      per-frame minimum ({@code VIDEO_MIN_PIXELS}, default 128*28*28)
 * @param maxPixels      per-frame maximum ({@code VIDEO_MAX_PIXELS}, default 768*28*28)
 * @param totalPixels    budget over all frames ({@code VIDEO_TOTAL_PIXELS}, default 128000*28*28*0.9)
 */
public record VideoSampling(double fps, int minFrames, int maxFrames, double minPixels, double maxPixels,
                            double totalPixels) {
    /** The frame count factor (frames are sampled in pairs). */
    public static final int FRAME_FACTOR = 2;

    public VideoSampling {
        if (!(fps > 0)) throw new VideoException("fps must be positive, got " + fps);
        if (minFrames < 1 || maxFrames < minFrames)
            throw new VideoException("invalid frame limits: min " + minFrames + ", max " + maxFrames);
    }

    /** qwen-vl-utils' defaults. */
    public static VideoSampling defaults() {
        return new VideoSampling(2.0, 4, 768, 128 * 28 * 28, 768 * 28 * 28, 128000 * 28 * 28 * 0.9);
    }

    /**
     * The defaults overridden by {@code FPS}, {@code FPS_MIN_FRAMES}, {@code FPS_MAX_FRAMES},
     * {@code VIDEO_MIN_PIXELS}, {@code VIDEO_MAX_PIXELS} (per frame) and {@code VIDEO_TOTAL_PIXELS}, as ms-swift reads them.
     */
    public static VideoSampling fromEnv(Map<String, String> env) {
        VideoSampling d = defaults();
        double fps = d.fps;
        String f = env.get("FPS");
        if (f != null && !f.isBlank()) {
            try {
                fps = Double.parseDouble(f.trim());
            } catch (NumberFormatException e) {
                throw new VideoException("environment variable FPS=" + f + " is not a number");
            }
        }
        Long minF = ImageProcessorConfig.envLong(env, "FPS_MIN_FRAMES"), maxF = ImageProcessorConfig.envLong(env, "FPS_MAX_FRAMES");
        Long minP = ImageProcessorConfig.envLong(env, "VIDEO_MIN_PIXELS"), maxP = ImageProcessorConfig.envLong(env, "VIDEO_MAX_PIXELS");
        Long tot = ImageProcessorConfig.envLong(env, "VIDEO_TOTAL_PIXELS");
        return new VideoSampling(fps, minF == null ? d.minFrames : Math.toIntExact(minF),
                maxF == null ? d.maxFrames : Math.toIntExact(maxF), minP == null ? d.minPixels : minP,
                maxP == null ? d.maxPixels : maxP, tot == null ? d.totalPixels : tot);
    }

    /** How many frames to sample from a video of {@code totalFrames} frames at {@code videoFps} ({@code smart_nframes}). */
    public int frameCount(int totalFrames, double videoFps) {
        if (totalFrames < FRAME_FACTOR)
            throw new VideoException("video has " + totalFrames + " frame(s); at least " + FRAME_FACTOR + " are needed");
        if (!(videoFps > 0)) throw new VideoException("video frame rate unknown or invalid: " + videoFps);
        double min = Math.ceil((double) minFrames / FRAME_FACTOR) * FRAME_FACTOR;
        double max = Math.floor((double) Math.min(maxFrames, totalFrames) / FRAME_FACTOR) * FRAME_FACTOR;
        double n = totalFrames / videoFps * fps;
        n = Math.min(Math.min(Math.max(n, min), max), totalFrames);
        int frames = (int) (Math.floor(n / FRAME_FACTOR) * FRAME_FACTOR);
        if (frames < FRAME_FACTOR || frames > totalFrames)
            throw new VideoException("cannot sample frames: nframes " + frames + " must be in [" + FRAME_FACTOR
                    + ", " + totalFrames + "]");
        return frames;
    }

    /** {@code torch.linspace(0, total-1, n).round().long()} (float32 arithmetic, round half to even). */
    public static int[] frameIndices(int totalFrames, int n) {
        int[] idx = new int[n];
        if (n == 1) return idx;
        float start = 0, end = totalFrames - 1;
        float step = (end - start) / (float) (n - 1);
        int halfway = n / 2;
        for (int i = 0; i < n; i++) {
            float v = i < halfway ? start + step * i : end - step * (n - i - 1);
            idx[i] = (int) Math.rint(v);
        }
        return idx;
    }

    /** The sampled frame rate: {@code n / total * videoFps}. */
    public static double sampleFps(int n, int totalFrames, double videoFps) {
        return n / Math.max(totalFrames, 1e-6) * videoFps;
    }

    /** The per-frame pixel cap for {@code n} frames: {@code max(min(maxPixels, total/n*2), int(minPixels*1.05))}. */
    public double frameMaxPixels(int n) {
        return Math.max(Math.min(maxPixels, totalPixels / n * FRAME_FACTOR), Math.floor(minPixels * 1.05));
    }
}
