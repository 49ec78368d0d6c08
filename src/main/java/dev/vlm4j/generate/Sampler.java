package dev.vlm4j.generate;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;
import java.util.random.RandomGenerator;

/**
 * Chooses the next token from a row of logits, applying transformers' logits processors in its order:
 * repetition penalty, temperature, top-k, top-p, min-p; then softmax and a multinomial draw. Greedy decoding
 * (see {@link SamplingOptions#isGreedy()}) takes the argmax after the repetition penalty, lowest index on ties.
 * <p>
 * A seed reproduces the sequence of draws: the random source is a {@link SplittableRandom} seeded from
 * {@link SamplingOptions#seed()}. Work is proportional to the vocabulary plus the candidate set: top-k uses a
 * bounded heap, and top-p without top-k grows a sorted prefix of the most likely tokens until it holds the mass
 * it needs, so the full vocabulary is only sorted in the worst case. Not thread-safe (one per sequence).
 */
public final class Sampler {
    private final SamplingOptions options;
    private final RandomGenerator random;
    private float[] work = new float[0], saved = new float[0];

    /** A sampler seeded from {@code options.seed()} (a random seed when null). */
    public Sampler(SamplingOptions options) {
        this(options, options.seed() == null ? new SplittableRandom() : new SplittableRandom(options.seed()));
    }

    /** A sampler drawing from the given source. */
    public Sampler(SamplingOptions options, RandomGenerator random) {
        this.options = options;
        this.random = random;
    }

    public SamplingOptions options() { return options; }

    /** The next token for these logits (left unchanged), given the tokens so far (prompt and generated). */
    public int next(float[] logits, int[] previousTokens) {
        return next(logits, previousTokens, previousTokens == null ? 0 : previousTokens.length);
    }

    /** As {@link #next(float[], int[])}, with only the first {@code previousCount} entries of previousTokens used. */
    public int next(float[] logits, int[] previousTokens, int previousCount) {
        return next(logits, 0, logits.length, previousTokens, previousCount);
    }

    /**
     * As {@link #next(float[], int[], int)} for the logits {@code logits[offset, offset + vocab)}, e.g. one row of a
     * batch's logits; returns a token id in [0, vocab). The array is left unchanged (greedy decoding writes the
     * penalized entries into it and restores them, so it must not be read concurrently).
     */
    public int next(float[] logits, int offset, int vocab, int[] previousTokens, int previousCount) {
        int v = vocab;
        if (v <= 0) throw new IllegalArgumentException("empty logits");
        boolean penalize = options.repetitionPenalty() != 1.0 && previousTokens != null && previousCount > 0;
        float penalty = (float) options.repetitionPenalty();
        if (options.isGreedy()) { // no copy of the vocabulary: greedy is the common serving case
            if (!penalize) return argmax(logits, offset, v);
            penalize(logits, offset, v, previousTokens, previousCount, penalty);
            try {
                return argmax(logits, offset, v);
            } finally {
                for (int k = 0; k < previousCount; k++) logits[offset + previousTokens[k]] = saved[k];
            }
        }
        if (work.length != v) work = new float[v];
        float[] w = work;
        System.arraycopy(logits, offset, w, 0, v);
        if (penalize) penalize(w, 0, v, previousTokens, previousCount, penalty);

        float invT = (float) (1.0 / options.temperature());
        if (options.temperature() != 1.0) for (int i = 0; i < v; i++) w[i] *= invT;
        // The surviving tokens, sorted by descending logit (ties: lowest index first) when 'sorted'.
        int[] idx;
        int n;
        if (options.topK() > 0 && options.topK() < v) {
            idx = topKWithTies(w, options.topK());
            n = idx.length;
        } else if (options.topP() < 1.0) {
            idx = nucleusOfAll(w, options.topP());
            n = idx.length;
        } else {
            idx = null;
            n = v;
        }
        if (idx != null && options.topP() < 1.0) n = nucleusOfSorted(w, idx, n, options.topP());
        return draw(w, idx, n, (float) options.minP());
    }

    /** transformers' RepetitionPenaltyLogitsProcessor: each distinct previous token once, from its original logit. */
    static void applyRepetitionPenalty(float[] original, float[] w, int[] prev, int count, float penalty) {
        for (int k = 0; k < count; k++) {
            int t = prev[k];
            if (t < 0 || t >= w.length)
                throw new IllegalArgumentException("previous token id " + t + " outside the vocabulary of " + w.length);
            float x = original[t];
            w[t] = x < 0 ? x * penalty : x / penalty;
        }
    }

    /**
     * {@link #applyRepetitionPenalty} in place on {@code a[offset, offset + vocab)}: every original value is read
     * (into {@link #saved}, in the order of {@code prev}) before any is written, so a repeated token is penalized once.
     */
    private void penalize(float[] a, int offset, int vocab, int[] prev, int count, float penalty) {
        if (saved.length < count) saved = new float[Math.max(count, 2 * saved.length)];
        for (int k = 0; k < count; k++) {
            int t = prev[k];
            if (t < 0 || t >= vocab)
                throw new IllegalArgumentException("previous token id " + t + " outside the vocabulary of " + vocab);
            saved[k] = a[offset + t];
        }
        for (int k = 0; k < count; k++) {
            float x = saved[k];
            a[offset + prev[k]] = x < 0 ? x * penalty : x / penalty;
        }
    }

    /** Index of the largest value, lowest index on ties; NaN is never chosen unless all values are NaN. */
    public static int argmax(float[] x) {
        return argmax(x, 0, x.length);
    }

    /** {@link #argmax(float[])} of {@code x[offset, offset + n)}, as an index in [0, n) (vectorized where possible). */
    public static int argmax(float[] x, int offset, int n) {
        return dev.vlm4j.compute.cpu.Argmax.of(x, offset, n);
    }

    /** Descending by value, then ascending by index. */
    private static boolean before(float[] w, int a, int b) {
        return w[a] > w[b] || (w[a] == w[b] && a < b);
    }

    /** The indices of the m largest values, sorted (ties: lowest index first), via a bounded min-heap. */
    static int[] topIndices(float[] w, int m) {
        m = Math.min(m, w.length);
        int[] heap = new int[m];
        int size = 0;
        for (int i = 0; i < w.length; i++) {
            if (size < m) {
                heap[size] = i;
                siftUp(w, heap, size++);
            } else if (before(w, i, heap[0])) {
                heap[0] = i;
                siftDown(w, heap, size);
            }
        }
        // heap-sort in place: repeatedly move the worst to the end -> descending order
        for (int end = size - 1; end > 0; end--) {
            int t = heap[0]; heap[0] = heap[end]; heap[end] = t;
            siftDown(w, heap, end);
        }
        return heap;
    }

    // min-heap by 'before' order: the root is the element that comes last.
    private static void siftUp(float[] w, int[] h, int i) {
        while (i > 0) {
            int p = (i - 1) >>> 1;
            if (!before(w, h[p], h[i])) break;
            int t = h[p]; h[p] = h[i]; h[i] = t;
            i = p;
        }
    }

    private static void siftDown(float[] w, int[] h, int size) {
        int i = 0;
        while (true) {
            int l = 2 * i + 1, r = l + 1, m = i;
            if (l < size && before(w, h[m], h[l])) m = l;
            if (r < size && before(w, h[m], h[r])) m = r;
            if (m == i) return;
            int t = h[m]; h[m] = h[i]; h[i] = t;
            i = m;
        }
    }

    /** transformers' TopKLogitsWarper: the k largest, plus any token tied with the k-th value. */
    static int[] topKWithTies(float[] w, int k) {
        int[] top = topIndices(w, k);
        float kth = w[top[top.length - 1]];
        int extra = 0;
        for (int i = 0; i < w.length; i++) if (w[i] == kth) extra++;
        int inTop = 0;
        for (int t : top) if (w[t] == kth) inTop++;
        if (extra == inTop) return top;
        return topIndices(w, top.length + extra - inTop);
    }

    /**
     * transformers' TopPLogitsWarper over sorted candidates: keeps the leading tokens while the probability mass
     * before each is below topP (the smallest set reaching topP; always at least one). Returns the new count.
     */
    static int nucleusOfSorted(float[] w, int[] idx, int n, double topP) {
        float max = w[idx[0]];
        double z = 0;
        for (int i = 0; i < n; i++) z += Math.exp(w[idx[i]] - max);
        double cum = 0;
        for (int i = 0; i < n; i++) {
            if (cum >= topP * z) return Math.max(1, i);
            cum += Math.exp(w[idx[i]] - max);
        }
        return n;
    }

    /** The top-p set of the whole vocabulary, sorted, found by growing a sorted prefix of the largest logits. */
    static int[] nucleusOfAll(float[] w, double topP) {
        float max = Float.NEGATIVE_INFINITY;
        for (float x : w) if (x > max) max = x;
        double z = 0;
        for (float x : w) z += Math.exp(x - max);
        double need = topP * z;
        for (int m = Math.min(64, w.length); ; m = (int) Math.min((long) m * 4, w.length)) {
            int[] top = topIndices(w, m);
            double cum = 0;
            for (int i = 0; i < top.length; i++) {
                if (cum >= need) return Arrays.copyOf(top, Math.max(1, i));
                cum += Math.exp(w[top[i]] - max);
            }
            if (m == w.length) return top;
        }
    }

    /** min-p filter, softmax and a multinomial draw over the candidates (all tokens when idx is null). */
    private int draw(float[] w, int[] idx, int n, float minP) {
        float max = Float.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, w[idx == null ? i : idx[i]]);
        if (max == Float.NEGATIVE_INFINITY || Float.isNaN(max)) return argmax(w);
        // min-p: p < minP * pmax  <=>  logit < max + ln(minP); the top token always survives.
        float floor = minP > 0 ? max + (float) Math.log(minP) : Float.NEGATIVE_INFINITY;
        double z = 0;
        for (int i = 0; i < n; i++) {
            float x = w[idx == null ? i : idx[i]];
            if (x >= floor) z += Math.exp(x - max);
        }
        double u = random.nextDouble() * z, cum = 0;
        int last = -1;
        for (int i = 0; i < n; i++) {
            int t = idx == null ? i : idx[i];
            float x = w[t];
            if (x < floor) continue;
            cum += Math.exp(x - max);
            last = t;
            if (u < cum) return t;
        }
        return last; // rounding: u landed on the very end
    }

    /** log-softmax of the logits, computed in double precision. */
    public static float[] logSoftmax(float[] logits) {
        float max = Float.NEGATIVE_INFINITY;
        for (float x : logits) if (x > max) max = x;
        double z = 0;
        for (float x : logits) z += Math.exp(x - max);
        double lse = max + Math.log(z);
        float[] out = new float[logits.length];
        for (int i = 0; i < logits.length; i++) out[i] = (float) (logits[i] - lse);
        return out;
    }

    /** One token's log-probability. */
    public record TokenLogprob(int token, float logprob) {}

    /** The log-probability of one token under these logits. */
    public static float logprob(float[] logits, int token) {
        float max = Float.NEGATIVE_INFINITY;
        for (float x : logits) if (x > max) max = x;
        double z = 0;
        for (float x : logits) z += Math.exp(x - max);
        return (float) (logits[token] - max - Math.log(z));
    }

    /** The k most likely tokens with their log-probabilities, most likely first (ties: lowest id first). */
    public static List<TokenLogprob> topLogprobs(float[] logits, int k) {
        if (k <= 0) return List.of();
        float max = Float.NEGATIVE_INFINITY;
        for (float x : logits) if (x > max) max = x;
        double z = 0;
        for (float x : logits) z += Math.exp(x - max);
        double lse = max + Math.log(z);
        List<TokenLogprob> out = new ArrayList<>();
        for (int t : topIndices(logits, k)) out.add(new TokenLogprob(t, (float) (logits[t] - lse)));
        return out;
    }
}
