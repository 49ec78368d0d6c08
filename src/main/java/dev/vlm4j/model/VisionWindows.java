package dev.vlm4j.model;

import java.util.ArrayList;
import java.util.List;

/**
 * The bookkeeping of Qwen2.5-VL's window attention, in one place.
 * <p>
 * For each image or video (grid {@code t, gh, gw} in patches) the merged-token grid {@code lh x lw}
 * ({@code lh = gh/2}) is padded up to whole windows of {@code ws x ws} merged tokens (a full extra window when
 * already divisible, as transformers does), windows are walked row-major and tokens row-major inside each window,
 * and padding is dropped. That gives {@link #windowIndex} (offset by the tokens of earlier items) and
 * {@link #cuWindowSeqlens} in patches (empty windows dropped). {@link #cuSeqlens} has one full-attention segment
 * per (item, temporal step).
 */
public final class VisionWindows {
    /** windowIndex[i] = raster (merged-token) index of the i-th token in window order. */
    public final int[] windowIndex;
    /** Inverse permutation: position in window order of raster token r. */
    public final int[] reverseIndex;
    public final int[] cuWindowSeqlens;
    public final int[] cuSeqlens;

    public VisionWindows(List<int[]> gridsThw, int spatialMerge, int windowSize, int patchSize) {
        int ws = windowSize / spatialMerge / patchSize;
        int unit = spatialMerge * spatialMerge;
        List<Integer> index = new ArrayList<>();
        List<Integer> cuWin = new ArrayList<>();
        cuWin.add(0);
        List<Integer> cu = new ArrayList<>();
        cu.add(0);
        int offset = 0;
        for (int[] g : gridsThw) {
            int t = g[0], gh = g[1], gw = g[2], lh = gh / spatialMerge, lw = gw / spatialMerge;
            int padH = ws - lh % ws, padW = ws - lw % ws;
            int nwh = (lh + padH) / ws, nww = (lw + padW) / ws;
            for (int k = 0; k < t; k++) {
                for (int wr = 0; wr < nwh; wr++) {
                    for (int wc = 0; wc < nww; wc++) {
                        int count = 0;
                        for (int r = wr * ws; r < (wr + 1) * ws; r++) {
                            for (int c = wc * ws; c < (wc + 1) * ws; c++) {
                                if (r < lh && c < lw) {
                                    index.add(offset + (k * lh + r) * lw + c);
                                    count++;
                                }
                            }
                        }
                        if (count > 0) cuWin.add(cuWin.get(cuWin.size() - 1) + count * unit);
                    }
                }
                cu.add(cu.get(cu.size() - 1) + gh * gw);
            }
            offset += t * lh * lw;
        }
        windowIndex = index.stream().mapToInt(Integer::intValue).toArray();
        reverseIndex = new int[windowIndex.length];
        for (int i = 0; i < windowIndex.length; i++) reverseIndex[windowIndex[i]] = i;
        cuWindowSeqlens = cuWin.stream().mapToInt(Integer::intValue).toArray();
        cuSeqlens = cu.stream().mapToInt(Integer::intValue).toArray();
    }

    /** Patch rows reordered: merged token windowIndex[i] (4 patches) becomes group i. */
    public int[] patchOrder(int unit) {
        int[] rows = new int[windowIndex.length * unit];
        for (int i = 0; i < windowIndex.length; i++)
            for (int u = 0; u < unit; u++) rows[i * unit + u] = windowIndex[i] * unit + u;
        return rows;
    }
}
