package dev.vlm4j.preprocess.video;

import dev.vlm4j.preprocess.image.RgbImage;
import org.bytedeco.ffmpeg.global.avutil;
import org.bytedeco.javacv.FFmpegFrameGrabber;
import org.bytedeco.javacv.Frame;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Decodes video files (MP4/H.264 and whatever else FFmpeg reads) through JavaCV, keeping only sampled frames
 * as 8-bit RGB. The frame count comes from the container; if the stream turns out shorter, the actual count
 * is used and the file is decoded again, so the sampled indices always refer to real frames.
 */
public final class VideoDecoder {
    /** The decoded frames, the source's frame count and frame rate. */
    public record Decoded(List<RgbImage> frames, int[] indices, int totalFrames, double videoFps) {}

    private VideoDecoder() {}

    /** Picks the (sorted) frame indices to keep from a video's frame count and frame rate. */
    @FunctionalInterface
    public interface Chooser {
        int[] choose(int totalFrames, double videoFps);
    }

    /** Decodes the frames that {@code chooser} selects. */
    public static Decoded decode(Path file, Chooser chooser) {
        if (!Files.isRegularFile(file)) throw new VideoException("video file not found: " + file);
        avutil.av_log_set_level(avutil.AV_LOG_FATAL);
        int estimated;
        double fps;
        try (FFmpegFrameGrabber g = open(file)) {
            estimated = g.getLengthInVideoFrames();
            fps = g.getVideoFrameRate() > 0 ? g.getVideoFrameRate() : g.getFrameRate();
            if (estimated > 0) {
                int[] idx = chooser.choose(estimated, fps);
                Pass p = pass(g, idx, file);
                if (p.frames.size() == idx.length) return new Decoded(p.frames, idx, estimated, fps);
                estimated = p.seen; // the container over-estimated: redo with the real count
            } else {
                estimated = countFrames(g, file);
            }
        } catch (org.bytedeco.javacv.FrameGrabber.Exception e) {
            throw new VideoException("cannot decode video " + file + ": " + e.getMessage(), e);
        }
        try (FFmpegFrameGrabber g = open(file)) {
            int[] idx = chooser.choose(estimated, fps);
            Pass p = pass(g, idx, file);
            if (p.frames.size() != idx.length)
                throw new VideoException("video " + file + " yielded " + p.seen + " frames on a second read, expected "
                        + estimated);
            return new Decoded(p.frames, idx, estimated, fps);
        } catch (org.bytedeco.javacv.FrameGrabber.Exception e) {
            throw new VideoException("cannot decode video " + file + ": " + e.getMessage(), e);
        }
    }

    private static FFmpegFrameGrabber open(Path file) throws org.bytedeco.javacv.FrameGrabber.Exception {
        FFmpegFrameGrabber g = new FFmpegFrameGrabber(file.toFile());
        g.setPixelFormat(avutil.AV_PIX_FMT_RGB24);
        try {
            g.start();
        } catch (org.bytedeco.javacv.FrameGrabber.Exception e) {
            g.close();
            throw e;
        }
        if (g.getImageWidth() <= 0 || g.getImageHeight() <= 0) {
            g.close();
            throw new VideoException("no video stream in " + file);
        }
        return g;
    }

    private record Pass(List<RgbImage> frames, int seen) {}

    private static Pass pass(FFmpegFrameGrabber g, int[] idx, Path file) throws org.bytedeco.javacv.FrameGrabber.Exception {
        List<RgbImage> out = new ArrayList<>(idx.length);
        int next = 0, i = 0;
        Frame f;
        while (next < idx.length && (f = g.grabImage()) != null) {
            if (f.image == null) continue;
            RgbImage img = null;
            while (next < idx.length && idx[next] == i) {
                if (img == null) img = toRgb(f, file);
                out.add(img);
                next++;
            }
            i++;
        }
        if (next < idx.length) { // count the rest so the caller knows the real length
            while ((f = g.grabImage()) != null) if (f.image != null) i++;
        }
        return new Pass(out, i);
    }

    private static int countFrames(FFmpegFrameGrabber g, Path file) throws org.bytedeco.javacv.FrameGrabber.Exception {
        int n = 0;
        Frame f;
        while ((f = g.grabImage()) != null) if (f.image != null) n++;
        if (n == 0) throw new VideoException("video " + file + " has no frames");
        return n;
    }

    private static RgbImage toRgb(Frame f, Path file) {
        int w = f.imageWidth, h = f.imageHeight;
        if (f.imageChannels != 3 || f.imageDepth != Frame.DEPTH_UBYTE)
            throw new VideoException("unexpected decoded frame format in " + file + ": " + f.imageChannels
                    + " channels, depth " + f.imageDepth);
        ByteBuffer buf = (ByteBuffer) f.image[0];
        int stride = f.imageStride;
        byte[] rgb = new byte[w * h * 3];
        for (int y = 0; y < h; y++) buf.get(y * stride, rgb, y * w * 3, w * 3);
        return new RgbImage(w, h, rgb);
    }
}
