package dev.vlm4j.preprocess.video;

import dev.vlm4j.preprocess.image.ImageProcessorConfig;
import dev.vlm4j.preprocess.image.RgbImage;
import org.bytedeco.ffmpeg.global.avcodec;
import org.bytedeco.ffmpeg.global.avutil;
import org.bytedeco.javacv.FFmpegFrameRecorder;
import org.bytedeco.javacv.Frame;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class VideoProcessorTest {
    private static final ImageProcessorConfig VIDEO_DEFAULTS = ImageProcessorConfig.defaults(ImageProcessorConfig.Kind.VIDEO);

    private static RgbImage solid(int w, int h, int v) {
        byte[] b = new byte[w * h * 3];
        Arrays.fill(b, (byte) v);
        return new RgbImage(w, h, b);
    }

    @Test
    void oddFrameCountRepeatsLastFrame() {
        var cfg = VIDEO_DEFAULTS.withPixels(3136, 50176);
        VideoProcessor vp = new VideoProcessor(cfg, VideoSampling.defaults());
        List<RgbImage> frames = List.of(solid(112, 84, 0), solid(112, 84, 100), solid(112, 84, 200));
        ProcessedVideo v = vp.processFrames(frames, 24);
        assertArrayEquals(new int[]{2, 6, 8}, v.gridThw(), "grid for 3 frames of 112x84");
        assertEquals(2 / 24.0, v.secondPerGridT(), 1e-12, "second_per_grid_ts");
        float[] pv = v.pixelValues().toFloatArray();
        int cols = 1176;
        // row 48 (t = 1) holds frames 2 and 2 again: temporal slots 0 and 1 of channel 0 are equal.
        float slot0 = pv[48 * cols], slot1 = pv[48 * cols + 14 * 14];
        assertEquals(slot0, slot1, "padded frame must repeat the last frame");
        float expected = (float) ((200 / 255.0 - 0.48145466) / 0.26862954);
        assertEquals(expected, slot0, 1e-5, "normalised value of the last frame");
    }

    @Test
    void framesAreResizedWithVideoBudget() {
        VideoProcessor vp = new VideoProcessor(VIDEO_DEFAULTS, VideoSampling.defaults());
        ProcessedVideo v = vp.processFrames(List.of(solid(64, 48, 10), solid(64, 48, 20)), 2);
        // 48x64 is below 128*28*28 pixels: upscaled to 280x392.
        assertArrayEquals(new int[]{1, 20, 28}, v.gridThw(), "grid");
        assertEquals(1.0, v.secondPerGridT(), 1e-12);
    }

    @Test
    void tokenLimitRejectsLargeVideos() {
        VideoProcessor vp = new VideoProcessor(VIDEO_DEFAULTS.withMaxTokens(100), VideoSampling.defaults());
        var e = assertThrows(dev.vlm4j.preprocess.image.ImageException.class, () -> vp.processFrames(List.of(solid(64, 48, 10)), 2));
        assertTrue(e.getMessage().contains("140 tokens") && e.getMessage().contains("100"), e.getMessage());
    }

    @Test
    void samplingFollowsQwenVlUtils() {
        VideoSampling s = VideoSampling.defaults();
        assertEquals(6, s.frameCount(30, 10), "30 frames at 10 fps, 2 fps");
        assertEquals(4, s.frameCount(10, 30), "at least 4 frames");
        assertEquals(768, s.frameCount(100000, 25), "at most 768 frames");
        assertEquals(24, s.frameCount(300, 24.0), "300/24*2 = 25 -> even 24");
        assertEquals(2, s.frameCount(3, 30), "clamped to the frame count, made even");
        assertThrows(VideoException.class, () -> s.frameCount(1, 30));
        assertArrayEquals(new int[]{0, 6, 12, 17, 23, 29}, VideoSampling.frameIndices(30, 6));
        assertArrayEquals(new int[]{0, 3, 6, 9}, VideoSampling.frameIndices(10, 4));
        assertEquals(2.0, VideoSampling.sampleFps(6, 30, 10), 1e-12);
        assertEquals(602112, s.frameMaxPixels(6), 1e-9, "per-frame cap");
        assertEquals(90316800 / 768.0 * 2, s.frameMaxPixels(768), 1e-6, "total budget over many frames");
        assertEquals(Math.floor(128 * 784 * 1.05), new VideoSampling(2, 4, 768, 128 * 784, 768 * 784, 1e6)
                .frameMaxPixels(768), 1e-9, "never below min_pixels*1.05");
        VideoSampling env = VideoSampling.fromEnv(Map.of("FPS", "1", "FPS_MAX_FRAMES", "8",
                "VIDEO_MAX_PIXELS", "256*28*28"));
        assertEquals(1.0, env.fps());
        assertEquals(8, env.maxFrames());
        assertEquals(256 * 28 * 28, env.maxPixels());
        assertEquals(8, env.frameCount(1000, 25), "FPS_MAX_FRAMES caps the count");
    }

    /** Writes a 64x48, 10 fps MP4 of 30 frames; frame i is grey level 8*i. Returns the codec used. */
    private static String writeMp4(Path file) throws Exception {
        avutil.av_log_set_level(avutil.AV_LOG_ERROR);
        Exception last = null;
        for (int codec : new int[]{avcodec.AV_CODEC_ID_H264, avcodec.AV_CODEC_ID_MPEG4}) {
            try (FFmpegFrameRecorder r = new FFmpegFrameRecorder(file.toFile(), 64, 48)) {
                r.setFormat("mp4");
                r.setVideoCodec(codec);
                r.setFrameRate(10);
                r.setPixelFormat(avutil.AV_PIX_FMT_YUV420P);
                r.setVideoQuality(1);
                r.start();
                for (int i = 0; i < 30; i++) {
                    Frame f = new Frame(64, 48, Frame.DEPTH_UBYTE, 3);
                    ByteBuffer buf = (ByteBuffer) f.image[0];
                    for (int y = 0; y < 48; y++)
                        for (int x = 0; x < 64 * 3; x++) buf.put(y * f.imageStride + x, (byte) (8 * i));
                    r.record(f, avutil.AV_PIX_FMT_RGB24);
                }
                r.stop();
                return codec == avcodec.AV_CODEC_ID_H264 ? "h264" : "mpeg4";
            } catch (Exception e) {
                last = e;
            }
        }
        throw last;
    }

    @Test
    void mp4FileIsSampledAndProcessed(@TempDir Path tmp) throws Exception {
        Path mp4 = tmp.resolve("clip.mp4");
        String codec = writeMp4(mp4);
        System.out.println("test MP4 written with codec " + codec);
        VideoDecoder.Decoded d = VideoDecoder.decode(mp4,
                (total, fps) -> VideoSampling.frameIndices(total, VideoSampling.defaults().frameCount(total, fps)));
        assertEquals(30, d.totalFrames(), "frame count of the " + codec + " file");
        assertEquals(10.0, d.videoFps(), 1e-6, "frame rate");
        assertArrayEquals(new int[]{0, 6, 12, 17, 23, 29}, d.indices(), "sampled indices");
        List<Integer> means = new ArrayList<>();
        for (int j = 0; j < d.frames().size(); j++) {
            RgbImage f = d.frames().get(j);
            assertEquals(64, f.width());
            assertEquals(48, f.height());
            long sum = 0;
            for (byte b : f.rgb()) sum += b & 0xFF;
            int mean = (int) Math.round(sum / (double) f.rgb().length);
            means.add(mean);
            int want = 8 * d.indices()[j];
            assertTrue(Math.abs(mean - want) <= 4, "sampled frame " + j + " (index " + d.indices()[j]
                    + ") has mean " + mean + ", expected about " + want + " (" + codec + ")");
        }

        VideoProcessor vp = new VideoProcessor(VIDEO_DEFAULTS, VideoSampling.defaults());
        ProcessedVideo v = vp.processFile(mp4);
        assertEquals(6, v.sampledFrames(), "sampled frame count");
        assertArrayEquals(new int[]{3, 20, 28}, v.gridThw(), "grid (48x64 upscaled to 280x392, 6 frames)");
        assertEquals(1.0, v.secondPerGridT(), 1e-9, "second_per_grid_ts = 2 / (6/30*10)");
        assertEquals(3L * 20 * 28, v.pixelValues().dim(0));

        // The processor's own (smaller) budget applies after qwen-vl-utils' resize.
        VideoProcessor small = new VideoProcessor(VIDEO_DEFAULTS.withPixels(3136, 25088), VideoSampling.defaults());
        assertArrayEquals(new int[]{3, 8, 12}, small.processFile(mp4).gridThw(), "grid under max_pixels 25088");
    }

    @Test
    void missingOrBrokenVideoFileIsReported(@TempDir Path tmp) throws Exception {
        VideoProcessor vp = new VideoProcessor(VIDEO_DEFAULTS, VideoSampling.defaults());
        var e = assertThrows(VideoException.class, () -> vp.processFile(tmp.resolve("nope.mp4")));
        assertTrue(e.getMessage().contains("nope.mp4"), e.getMessage());
        Path junk = tmp.resolve("junk.mp4");
        java.nio.file.Files.write(junk, new byte[]{1, 2, 3, 4, 5, 6, 7, 8});
        var e2 = assertThrows(VideoException.class, () -> vp.processFile(junk));
        assertTrue(e2.getMessage().contains("junk.mp4"), e2.getMessage());
    }
}
