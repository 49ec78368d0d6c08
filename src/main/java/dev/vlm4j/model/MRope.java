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

    /** Text positions (the same in every stream) below this keep their computed rows ({@link #tables}). */
    private static final int TEXT_ROWS = 1 << 16;
    /** Row p: cos then sin of the half frequencies at text position p, computed on first use. */
    private final java.util.concurrent.atomic.AtomicReferenceArray<float[]> textRows = new java.util.concurrent.atomic.AtomicReferenceArray<>(TEXT_ROWS);

    /**
     * cos and sin tables {@code [n, headDim]} for positions {@code pos[stream][i]}. Rows of text positions come from a
     * cache (the same values; a training step at 2k tokens spent ~5 ms of host time recomputing them).
     */
    public float[][] tables(long[][] pos, int from, int n) {
        int half = headDim / 2;
        float[] cos = new float[n * headDim], sin = new float[n * headDim];
        for (int i = 0; i < n; i++) {
            long p0 = pos[0][from + i];
            boolean text = p0 == pos[1][from + i] && p0 == pos[2][from + i] && p0 >= 0 && p0 < TEXT_ROWS;
            float[] row = text ? textRows.get((int) p0) : null;
            if (row == null) {
                row = new float[2 * half];
                for (int j = 0; j < half; j++) {
                    float angle = (float) pos[streamOf[j]][from + i] * invFreq[j];
                    row[j] = (float) Math.cos(angle);
                    row[half + j] = (float) Math.sin(angle);
                }
                if (text) textRows.set((int) p0, row);
            }
            System.arraycopy(row, 0, cos, i * headDim, half);
            System.arraycopy(row, 0, cos, i * headDim + half, half);
            System.arraycopy(row, half, sin, i * headDim, half);
            System.arraycopy(row, half, sin, i * headDim + half, half);
        }
        return new float[][]{cos, sin};
    }
}
