package dev.vlm4j.model;

/**
 * Multimodal rotary embedding tables (M-RoPE). Frequency {@code j < d/2} takes its position from stream t, h or w
 * according to {@code mrope_section}; the table is {@code [sel, sel]} over the head dimension, so rotate_half pairs
 * j with j + d/2. Computed in float32 like transformers.
 */
public final class MRope {
    private final float[] invFreq;
    private final int[] streamOf;
    private final int headDim;

    public MRope(int headDim, double theta, int[] section) {
        this.headDim = headDim;
        int half = headDim / 2;
        invFreq = new float[half];
        streamOf = new int[half];
        for (int j = 0; j < half; j++) {
            invFreq[j] = (float) (1.0 / Math.pow(theta, (float) (2 * j) / headDim));
            streamOf[j] = j < section[0] ? 0 : j < section[0] + section[1] ? 1 : 2;
        }
    }

    /** cos and sin tables {@code [n, headDim]} for positions {@code pos[stream][i]}. */
    public float[][] tables(long[][] pos, int from, int n) {
        int half = headDim / 2;
        float[] cos = new float[n * headDim], sin = new float[n * headDim];
        for (int i = 0; i < n; i++) {
            for (int j = 0; j < half; j++) {
                float angle = (float) pos[streamOf[j]][from + i] * invFreq[j];
                float c = (float) Math.cos(angle), s = (float) Math.sin(angle);
                cos[i * headDim + j] = c;
                cos[i * headDim + j + half] = c;
                sin[i * headDim + j] = s;
                sin[i * headDim + j + half] = s;
            }
        }
        return new float[][]{cos, sin};
    }
}
