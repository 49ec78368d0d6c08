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
}
