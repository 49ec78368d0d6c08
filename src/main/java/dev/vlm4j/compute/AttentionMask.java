package dev.vlm4j.compute;

/**
 * Which keys each query may see.
 * <ul>
 *   <li>{@code segments}: cumulative sequence lengths ({@code [0, s1, s1+s2, ...]}) splitting queries and keys into
 *       independent sequences (ViT images and windows, packed training samples); null means one segment.</li>
 *   <li>{@code causal}: query i sees keys up to its own absolute position.</li>
 *   <li>{@code queryOffset}: absolute position of the first query, i.e. how many keys precede the queries (the
 *       KV-cache length before this step). Only meaningful with one segment.</li>
 * </ul>
 */
public record AttentionMask(int[] segments, boolean causal, int queryOffset) {
    /** Causal attention over a KV cache holding {@code cached} earlier tokens. */
    public static AttentionMask causal(int cached) { return new AttentionMask(null, true, cached); }

    /** Bidirectional attention inside each segment of {@code cuSeqlens}. */
    public static AttentionMask segments(int[] cuSeqlens) { return new AttentionMask(cuSeqlens, false, 0); }

    /** Causal attention inside each segment (packed sequences). */
    public static AttentionMask causalSegments(int[] cuSeqlens) { return new AttentionMask(cuSeqlens, true, 0); }

    /**
     * The segment of each of {@code n} queries ({@code null} with one segment), checking that the segments cover
     * exactly the queries and keys.
     */
    public int[] querySegments(int n, int kvLen) {
        if (segments == null) return null;
        if (segments[segments.length - 1] != n || kvLen != n)
            throw new IllegalArgumentException("attention segments end at " + segments[segments.length - 1] + " but there are "
                    + n + " queries and " + kvLen + " keys");
        int[] segOf = new int[n];
        for (int s = 0; s + 1 < segments.length; s++) for (int i = segments[s]; i < segments[s + 1]; i++) segOf[i] = s;
        return segOf;
    }

    /** First key query {@code i} may see ({@code segOf} from {@link #querySegments}). */
    public int keyStart(int i, int[] segOf) {
        return segOf == null ? 0 : segments[segOf[i]];
    }

    /** One past the last key query {@code i} may see. */
    public int keyEnd(int i, int[] segOf, int kvLen) {
        if (segOf != null) return causal ? i + 1 : segments[segOf[i] + 1];
        return causal ? Math.min(kvLen, queryOffset + i + 1) : kvLen;
    }
}
