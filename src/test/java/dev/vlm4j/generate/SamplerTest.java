package dev.vlm4j.generate;

import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

class SamplerTest {
    private static final int[] NONE = new int[0];

    private static float[] logitsOf(double... probs) {
        float[] l = new float[probs.length];
        for (int i = 0; i < probs.length; i++) l[i] = (float) Math.log(probs[i]);
        return l;
    }

    private static SamplingOptions.Builder sampling(long seed) {
        return SamplingOptions.builder().temperature(1).topP(1).topK(0).minP(0).repetitionPenalty(1).seed(seed);
    }

    private static Set<Integer> drawnSet(SamplingOptions o, float[] logits, int draws) {
        Sampler s = new Sampler(o);
        Set<Integer> seen = new TreeSet<>();
        for (int i = 0; i < draws; i++) seen.add(s.next(logits, NONE));
        return seen;
    }

    private static float[] randomLogits(int v, long seed) {
        Random r = new Random(seed);
        float[] l = new float[v];
        for (int i = 0; i < v; i++) l[i] = (float) (r.nextGaussian() * 3);
        return l;
    }

    @Test
    void greedyIsArgmaxWithLowestIndexOnTies() {
        Sampler s = new Sampler(SamplingOptions.greedy());
        assertEquals(2, s.next(new float[]{0.1f, 3f, 5f, -1f}, NONE));
        assertEquals(1, s.next(new float[]{0f, 7f, 7f, 7f}, NONE));
        assertEquals(0, new Sampler(sampling(1).temperature(0).build()).next(new float[]{4f, 4f}, NONE));
        float[] big = randomLogits(152_064, 3);
        int best = 0;
        for (int i = 1; i < big.length; i++) if (big[i] > big[best]) best = i;
        assertEquals(best, s.next(big, NONE));
    }

    @Test
    void seedReproducesTheSequence() {
        float[] logits = randomLogits(1000, 7);
        SamplingOptions o = sampling(42).temperature(0.8).topP(0.95).build();
        Sampler a = new Sampler(o), b = new Sampler(o), c = new Sampler(o.toBuilder().seed(43L).build());
        int[] sa = new int[200], sb = new int[200], sc = new int[200];
        for (int i = 0; i < 200; i++) { sa[i] = a.next(logits, NONE); sb[i] = b.next(logits, NONE); sc[i] = c.next(logits, NONE); }
        assertArrayEquals(sa, sb);
        assertFalse(Arrays.equals(sa, sc), "another seed should give another sequence");
    }

    @Test
    void samplingMatchesTheDistribution() {
        double[] p = {0.1, 0.2, 0.3, 0.4};
        Sampler s = new Sampler(sampling(2024).build());
        float[] logits = logitsOf(p);
        int n = 20_000;
        int[] counts = new int[p.length];
        for (int i = 0; i < n; i++) counts[s.next(logits, NONE)]++;
        double chi2 = 0;
        for (int i = 0; i < p.length; i++) chi2 += Math.pow(counts[i] - n * p[i], 2) / (n * p[i]);
        // 3 degrees of freedom: P(chi2 > 16.27) = 0.001
        assertTrue(chi2 < 16.27, "chi-square " + chi2 + " for counts " + Arrays.toString(counts));
    }

    @Test
    void temperatureSharpensTheDistribution() {
        // temperature 0.5 squares the probabilities (then renormalises): 1:4 -> 1:16
        Sampler s = new Sampler(sampling(5).temperature(0.5).build());
        float[] logits = logitsOf(0.2, 0.8);
        int n = 20_000, ones = 0;
        for (int i = 0; i < n; i++) ones += s.next(logits, NONE);
        double expected = 16.0 / 17 * n, sd = Math.sqrt(n * (16.0 / 17) * (1.0 / 17));
        assertEquals(expected, ones, 5 * sd);
    }

    @Test
    void topKOneEqualsGreedy() {
        for (long seed = 0; seed < 20; seed++) {
            float[] logits = randomLogits(5000, seed);
            Sampler g = new Sampler(SamplingOptions.greedy());
            Sampler k = new Sampler(sampling(seed).topK(1).temperature(1.5).build());
            assertEquals(g.next(logits, NONE), k.next(logits, NONE));
        }
    }

    @Test
    void topKKeepsTheKLargestAndTies() {
        float[] logits = {1f, 4f, 3f, 2f, 0f};
        assertEquals(Set.of(1, 2), drawnSet(sampling(1).topK(2).build(), logits, 3000));
        // transformers keeps every token tied with the k-th value
        assertEquals(Set.of(1, 2, 3), drawnSet(sampling(1).topK(2).build(), new float[]{1f, 4f, 3f, 3f, 0f}, 3000));
        assertEquals(Set.of(0, 1, 2, 3, 4), drawnSet(sampling(1).topK(50).build(), logits, 5000));
    }

    @Test
    void topPKeepsTheSmallestSetReachingP() {
        float[] logits = logitsOf(0.05, 0.5, 0.15, 0.3);
        assertEquals(Set.of(1), drawnSet(sampling(3).topP(0.45).build(), logits, 2000));
        assertEquals(Set.of(1, 3), drawnSet(sampling(3).topP(0.75).build(), logits, 3000));
        assertEquals(Set.of(1, 2, 3), drawnSet(sampling(3).topP(0.9).build(), logits, 4000));
        assertEquals(Set.of(0, 1, 2, 3), drawnSet(sampling(3).topP(0.99).build(), logits, 8000));
        // the same with top-k applied first (top-p renormalises over the top-k survivors)
        assertEquals(Set.of(1, 3), drawnSet(sampling(3).topK(3).topP(0.75).build(), logits, 3000));
        // top-p over {0.5, 0.3, 0.15}/0.95 = {.526, .316, .158}: 0.8 needs all three
        assertEquals(Set.of(1, 2, 3), drawnSet(sampling(3).topK(3).topP(0.85).build(), logits, 4000));
        // a tiny top-p always keeps at least the most likely token
        assertEquals(Set.of(1), drawnSet(sampling(3).topP(1e-9).build(), logits, 500));
    }

    @Test
    void topPOverALargeVocabularyMatchesAFullSort() {
        for (long seed = 0; seed < 2; seed++) {
            float[] w = randomLogits(152_064, seed);
            for (double p : new double[]{0.1, 0.5, 0.95}) {
                Integer[] order = new Integer[w.length];
                for (int i = 0; i < w.length; i++) order[i] = i;
                Arrays.sort(order, (a, b) -> w[a] != w[b] ? Float.compare(w[b], w[a]) : Integer.compare(a, b));
                double max = w[order[0]], z = 0;
                for (float x : w) z += Math.exp(x - max);
                int n = 0;
                double cum = 0;
                while (n < w.length && cum < p * z) cum += Math.exp(w[order[n++]] - max);
                int[] got = Sampler.nucleusOfAll(w, p);
                assertEquals(n, got.length, "nucleus size for p=" + p);
                for (int i = 0; i < n; i++) assertEquals(order[i], got[i]);
            }
        }
    }

    @Test
    void minPDropsTokensBelowAFractionOfTheTopProbability() {
        float[] logits = logitsOf(0.05, 0.5, 0.15, 0.3);
        assertEquals(Set.of(1, 2, 3), drawnSet(sampling(9).minP(0.2).build(), logits, 4000));   // floor 0.1
        assertEquals(Set.of(1, 3), drawnSet(sampling(9).minP(0.5).build(), logits, 3000));      // floor 0.25
        assertEquals(Set.of(1), drawnSet(sampling(9).minP(1).build(), logits, 500));
    }

    @Test
    void repetitionPenaltyFollowsTransformers() {
        float[] logits = {2f, -2f, 1f, 0.5f};
        float[] w = logits.clone();
        Sampler.applyRepetitionPenalty(logits, w, new int[]{0, 1, 1, 1}, 4, 2f);
        // positive logits are divided, negative ones multiplied, each distinct token once
        assertArrayEquals(new float[]{1f, -4f, 1f, 0.5f}, w);

        SamplingOptions greedy = SamplingOptions.greedy().toBuilder().repetitionPenalty(2).build();
        assertEquals(1, new Sampler(greedy).next(new float[]{2f, 1.5f}, new int[]{0}));
        assertEquals(0, new Sampler(greedy).next(new float[]{2f, 1.5f}, new int[]{}));
        // a negative logit gets more negative: token 0 (-1 -> -2) loses to token 1 (-1.5)
        assertEquals(1, new Sampler(greedy).next(new float[]{-1f, -1.5f}, new int[]{0}));
        // the input logits are left unchanged
        float[] in = {2f, 1.5f};
        new Sampler(greedy).next(in, new int[]{0});
        assertArrayEquals(new float[]{2f, 1.5f}, in);
        assertThrows(IllegalArgumentException.class, () -> new Sampler(greedy).next(in, new int[]{5}));
    }

    @Test
    void greedyPenaltyInPlaceMatchesPenalizedCopy() {
        // a repeated token is penalized once, from its original logit, and the logits come back unchanged
        SamplingOptions greedy = SamplingOptions.greedy().toBuilder().repetitionPenalty(2).build();
        float[] in = {2f, 1.9f, 1.5f};
        assertEquals(2, new Sampler(greedy).next(in, new int[]{0, 0, 1, 0}));
        assertArrayEquals(new float[]{2f, 1.9f, 1.5f}, in);
        java.util.Random rnd = new java.util.Random(7);
        for (int trial = 0; trial < 200; trial++) {
            float[] logits = new float[50];
            for (int i = 0; i < logits.length; i++) logits[i] = (float) rnd.nextGaussian();
            int[] prev = new int[1 + rnd.nextInt(30)];
            for (int i = 0; i < prev.length; i++) prev[i] = rnd.nextInt(logits.length);
            float penalty = 0.5f + 2 * rnd.nextFloat();
            float[] w = logits.clone(), before = logits.clone();
            Sampler.applyRepetitionPenalty(logits, w, prev, prev.length, penalty);
            SamplingOptions o = SamplingOptions.greedy().toBuilder().repetitionPenalty(penalty).build();
            assertEquals(Sampler.argmax(w), new Sampler(o).next(logits, prev), "trial " + trial);
            assertArrayEquals(before, logits);
        }
    }

    @Test
    void logprobHelpers() {
        float[] logits = {1f, 3f, 2f, 3f};
        float[] ls = Sampler.logSoftmax(logits);
        double sum = 0;
        for (float x : ls) sum += Math.exp(x);
        assertEquals(1.0, sum, 1e-6);
        var top = Sampler.topLogprobs(logits, 3);
        assertEquals(List.of(1, 3, 2), top.stream().map(Sampler.TokenLogprob::token).toList());
        assertEquals(ls[1], top.get(0).logprob(), 1e-6);
        assertEquals(ls[2], Sampler.logprob(logits, 2), 1e-6);
        assertEquals(4, Sampler.topLogprobs(logits, 10).size());
    }

    @Test
    void optionsValidateRanges() {
        assertEquals(0.3, SamplingOptions.defaults().temperature());
        assertEquals(0.95, SamplingOptions.defaults().topP());
        assertTrue(SamplingOptions.greedy().isGreedy());
        assertTrue(SamplingOptions.builder().temperature(0).build().isGreedy());
        assertFalse(SamplingOptions.defaults().isGreedy());
        Map<String, SamplingOptions.Builder> bad = new LinkedHashMap<>();
        bad.put("top_p", SamplingOptions.builder().topP(0));
        bad.put("top_p ", SamplingOptions.builder().topP(1.5));
        bad.put("top_k", SamplingOptions.builder().topK(-1));
        bad.put("min_p", SamplingOptions.builder().minP(-0.1));
        bad.put("repetition_penalty", SamplingOptions.builder().repetitionPenalty(0));
        bad.put("max_new_tokens", SamplingOptions.builder().maxNewTokens(0));
        bad.put("temperature", SamplingOptions.builder().temperature(Double.NaN));
        bad.put("stop", SamplingOptions.builder().stop("a", ""));
        bad.forEach((what, b) -> {
            var e = assertThrows(IllegalArgumentException.class, b::build);
            assertTrue(e.getMessage().contains(what.strip()), e.getMessage());
        });
    }
}
