package dev.vlm4j.model;

import java.util.List;

/**
 * 3-D M-RoPE positions of a prompt (transformers' {@code get_rope_index}, as transformers 5 computes it).
 * Text tokens get the same value on the t, h and w streams, counting up. A vision block starting at position
 * {@code b} with merged grid {@code (T, H, W)} gives token (k, i, j) the positions
 * {@code t = b + floor(k * second_per_grid_t * tokens_per_second)} (0 for images), {@code h = b + i}, {@code w = b + j};
 * the text after it continues at {@code b + max(H, W)}.
 */
public final class RopeIndex {
    /** A vision item's grid in patches ({@code t, h, w} as in image_grid_thw) and its seconds per temporal grid step. */
    public record Grid(int t, int h, int w, double secondsPerGrid, boolean video) {
        public int mergedTokens(int merge) { return t * (h / merge) * (w / merge); }
    }

    /** Positions {@code [3][L]} and the delta that places later decoded tokens: {@code p + ropeDelta}. */
    public record Result(long[][] positions, long ropeDelta) {}

    private RopeIndex() {}

    public static Result compute(int[] ids, List<Grid> grids, int imageTokenId, int videoTokenId, int spatialMerge,
                                 double tokensPerSecond) {
        int n = ids.length;
        long[][] pos = new long[3][n];
        long next = 0, max = -1;
        int gi = 0;
        for (int i = 0; i < n; ) {
            int tok = ids[i];
            if (tok != imageTokenId && tok != videoTokenId) {
                pos[0][i] = pos[1][i] = pos[2][i] = next;
                max = Math.max(max, next);
                next++;
                i++;
                continue;
            }
            if (gi >= grids.size())
                throw new IllegalArgumentException("the prompt has more " + (tok == imageTokenId ? "<|image_pad|>" : "<|video_pad|>")
                        + " blocks than images/videos were given (" + grids.size() + ")");
            Grid g = grids.get(gi++);
            if (g.video() != (tok == videoTokenId))
                throw new IllegalArgumentException("vision item " + gi + " is " + (g.video() ? "a video" : "an image")
                        + " but the prompt has " + (tok == imageTokenId ? "an image" : "a video") + " placeholder there");
            int lh = g.h() / spatialMerge, lw = g.w() / spatialMerge, count = g.t() * lh * lw;
            for (int k = 0; k < count; k++) {
                if (i + k >= n || ids[i + k] != tok)
                    throw new IllegalArgumentException("vision item " + gi + " needs " + count + " placeholder tokens but the prompt has "
                            + k + " at index " + i);
            }
            long b = next;
            float step = (float) g.secondsPerGrid();
            for (int k = 0; k < g.t(); k++) {
                long tpos = g.video() ? (long) ((float) ((float) k * step) * (float) tokensPerSecond) : 0;
                for (int r = 0; r < lh; r++) {
                    for (int c = 0; c < lw; c++) {
                        int idx = i + (k * lh + r) * lw + c;
                        pos[0][idx] = b + tpos;
                        pos[1][idx] = b + r;
                        pos[2][idx] = b + c;
                        max = Math.max(max, Math.max(b + tpos, Math.max(b + r, b + c)));
                    }
                }
            }
            next = b + Math.max(lh, lw);
            i += count;
        }
        if (gi != grids.size())
            throw new IllegalArgumentException(grids.size() + " images/videos were given but the prompt has placeholders for " + gi);
        return new Result(pos, max + 1 - n);
    }

    /** Positions for text-only tokens continuing after a cache of {@code cached} tokens. */
    public static long[][] decodePositions(int cached, int n, long ropeDelta) {
        long[][] pos = new long[3][n];
        for (int i = 0; i < n; i++) pos[0][i] = pos[1][i] = pos[2][i] = cached + i + ropeDelta;
        return pos;
    }
}
