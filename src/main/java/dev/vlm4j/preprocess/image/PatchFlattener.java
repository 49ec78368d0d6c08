package dev.vlm4j.preprocess.image;

import java.util.List;

/**
 * Normalises equally sized RGB frames and flattens them into Qwen2-VL's patch rows.
 * <p>
 * With patch size {@code p}, temporal patch size {@code T} and merge size {@code m}, frames (padded to a
 * multiple of {@code T} by repeating the last) give {@code gt = F/T, gh = H/p, gw = W/p} and a
 * {@code [gt*gh*gw, 3*T*p*p]} matrix whose row
 * {@code ((t*(gh/m)+bh)*(gw/m)+bw)*m*m + mh*m + mw} and column {@code ((c*T+tp)*p+py)*p+px} hold channel
 * {@code c} of frame {@code T*t+tp} at row {@code (m*bh+mh)*p+py}, column {@code (m*bw+mw)*p+px}.
 */
public final class PatchFlattener {
    private PatchFlattener() {}

    /** The flattened rows and the grid {@code [gt, gh, gw]}. */
    public record Result(float[] values, int rows, int cols, int[] gridThw) {}

    /**
     * A per-channel lookup table from 8-bit value to normalised float32, computed as transformers does:
     * {@code float32(u8 * rescale)} (the product in double), then {@code (x - mean) / std} in float32.
     */
    public static float[][] normalisationTable(ImageProcessorConfig cfg) {
        float[][] lut = new float[3][256];
        for (int c = 0; c < 3; c++) {
            float mean = (float) cfg.imageMean()[c], std = (float) cfg.imageStd()[c];
            for (int v = 0; v < 256; v++) {
                float x = cfg.doRescale() ? (float) (v * cfg.rescaleFactor()) : v;
                lut[c][v] = cfg.doNormalize() ? (x - mean) / std : x;
            }
        }
        return lut;
    }

    /** Flattens {@code frames} (all of the same size, a multiple of {@code patchSize * mergeSize}). */
    public static Result flatten(List<RgbImage> frames, ImageProcessorConfig cfg) {
        if (frames.isEmpty()) throw new ImageException("no frames to flatten");
        int p = cfg.patchSize(), tps = cfg.temporalPatchSize(), m = cfg.mergeSize();
        int height = frames.getFirst().height(), width = frames.getFirst().width();
        for (RgbImage f : frames)
            if (f.width() != width || f.height() != height)
                throw new ImageException("frames differ in size: " + width + "x" + height + " and "
                        + f.width() + "x" + f.height());
        if (height % (p * m) != 0 || width % (p * m) != 0)
            throw new ImageException("frame size " + width + "x" + height + " is not a multiple of " + p * m);
        int nFrames = frames.size();
        int padded = (nFrames + tps - 1) / tps * tps;
        int gt = padded / tps, gh = height / p, gw = width / p;
        int cols = 3 * tps * p * p;
        long rowsL = (long) gt * gh * gw;
        if (rowsL * cols > Integer.MAX_VALUE - 16)
            throw new ImageException("too many patches: " + rowsL + " rows of " + cols);
        int rows = (int) rowsL;
        float[] out = new float[rows * cols];
        float[][] lut = normalisationTable(cfg);
        for (int t = 0; t < gt; t++) {
            for (int bh = 0; bh < gh / m; bh++) {
                for (int bw = 0; bw < gw / m; bw++) {
                    for (int mh = 0; mh < m; mh++) {
                        for (int mw = 0; mw < m; mw++) {
                            int row = ((t * (gh / m) + bh) * (gw / m) + bw) * m * m + mh * m + mw;
                            int base = row * cols;
                            int y0 = (m * bh + mh) * p, x0 = (m * bw + mw) * p;
                            for (int tp = 0; tp < tps; tp++) {
                                byte[] px = frames.get(Math.min(tps * t + tp, nFrames - 1)).rgb();
                                for (int c = 0; c < 3; c++) {
                                    float[] table = lut[c];
                                    int col = ((c * tps + tp) * p) * p;
                                    for (int py = 0; py < p; py++) {
                                        int src = ((y0 + py) * width + x0) * 3 + c;
                                        int dst = base + col + py * p;
                                        for (int qx = 0; qx < p; qx++) out[dst + qx] = table[px[src + qx * 3] & 0xFF];
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return new Result(out, rows, cols, new int[]{gt, gh, gw});
    }
}
