package dev.vlm4j.trace;

import dev.vlm4j.train.autograd.Parameter;
import dev.vlm4j.api.ChatMessages;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.generate.Generator;
import dev.vlm4j.generate.SamplingOptions;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.train.TrainableModel;
import dev.vlm4j.train.autograd.GradBackend;

import java.util.*;

/**
 * Runs one {@link FixtureCase} end to end (chat template, tokenizer, image/video preprocessing, vision tower,
 * language model, greedy generation, training loss) and returns what it computed under the fixture's tensor names.
 */
public final class Tracer {
    private final VisionLanguageModel vlm;
    private final TrainableModel trainable;

    public Tracer(VisionLanguageModel vlm) {
        this.vlm = vlm;
        this.trainable = null;
    }

    /**
     * A tracer that also computes gradients for cases with an answer: {@code trainable}'s registered parameters get
     * {@code grad.<name>} outputs (for the embedding table and LM head only the rows of the token ids in the
     * sequence / in the labels, listed in {@code grad.<name>.rows}).
     */
    public Tracer(TrainableModel trainable) {
        this.vlm = trainable.vlm();
        this.trainable = trainable;
    }

    public Map<String, Tensor> trace(FixtureCase c) {
        Map<String, Tensor> out = new LinkedHashMap<>();
        ChatMessages.Prepared prep = ChatMessages.prepare(c.messages());
        List<ChatMessages.Media> media = c.media(prep);
        String promptText = vlm.template().render(prep.messages(), Map.of("add_generation_prompt", true));
        VisionLanguageModel.Prompt prompt = vlm.tokenizePrompt(promptText, media, null, null, null);
        putMedia(out, prompt);
        Qwen25VLModel model = vlm.model();
        Backend be = model.backend();
        int vocab = model.config().text().vocabSize();

        if (c.generate() || c.answer() == null) {
            int[] ids = prompt.ids();
            int n = ids.length;
            out.put("input_ids", ids(ids, 1, n));
            Map<String, Tensor> taps = new LinkedHashMap<>();
            Qwen25VLModel.Sequence seq = model.newSequence(n + c.maxNewTokens() + 1);
            Qwen25VLModel.Prefill p = model.embedPrompt(ids, prompt.images(), prompt.videos(), taps::put);
            seq.ropeDelta = p.ropeDelta();
            long[] pos = new long[3 * n];
            for (int s = 0; s < 3; s++) System.arraycopy(p.positions()[s], 0, pos, s * n, n);
            out.put("position_ids", Tensor.ofLongs(pos, 3, 1, n));
            out.put("rope_deltas", Tensor.ofLongs(new long[]{p.ropeDelta()}, 1, 1));
            Tensor hidden = model.languageModel().forward(p.embeddings(), p.positions(), seq.cache, taps::put);
            taps.forEach((k, v) -> out.put(k, Tensor.of(be.toHost(v), v.shape())));
            float[] logits = be.toHost(model.languageModel().logits(hidden));
            putLogits(out, logits, n, vocab);
            out.put("logits_last", Tensor.of(Arrays.copyOfRange(logits, (n - 1) * vocab, n * vocab), vocab));
            if (c.generate()) {
                int steps = c.maxNewTokens();
                float[] topV = new float[steps * 5];
                long[] topI = new long[steps * 5];
                int[] recorded = {0};
                Generator g = new Generator(model, vlm.tokenizer(), vlm.generationConfig().eosTokenIds());
                SamplingOptions greedy = SamplingOptions.greedy().toBuilder().maxNewTokens(steps).build();
                Generator.Result r = g.generate(seq, ids, Arrays.copyOfRange(logits, (n - 1) * vocab, n * vocab), greedy,
                        c.stopAtEos(), null, (step, l, tok) -> {
                            recorded[0] = step + 1;
                            int[] top = topK(l, 0, l.length, 5);
                            for (int k = 0; k < 5; k++) {
                                topI[step * 5 + k] = top[k];
                                topV[step * 5 + k] = l[top[k]];
                            }
                        });
                long[] gen = Arrays.stream(r.tokens()).asLongStream().toArray();
                out.put("generated_ids", Tensor.ofLongs(gen, gen.length));
                int done = recorded[0];
                out.put("gen_top5_values", Tensor.of(Arrays.copyOf(topV, done * 5), done, 5));
                out.put("gen_top5_ids", Tensor.ofLongs(Arrays.copyOf(topI, done * 5), done, 5));
            }
        }
        if (c.answer() != null) {
            String trainText = promptText + c.answer() + "<|im_end|>\n";
            VisionLanguageModel.Prompt train = vlm.tokenizePrompt(trainText, media, null, null, null);
            int[] tids = train.ids();
            int promptLen = prompt.ids().length;
            for (int i = 0; i < promptLen && i < tids.length; i++)
                if (tids[i] != prompt.ids()[i])
                    throw new IllegalStateException("the training sequence does not start with the prompt's tokens (index " + i + ")");
            long[] labels = new long[tids.length];
            for (int i = 0; i < tids.length; i++) labels[i] = i < promptLen ? -100 : tids[i];
            out.put("train_input_ids", ids(tids, 1, tids.length));
            out.put("train_labels", Tensor.ofLongs(labels, 1, tids.length));
            float[] logits;
            double loss;
            if (trainable != null) {
                trainable.grad().zeroGrad();
                TrainableModel.Step step = trainable.lossAndBackward(tids, labels, train.images(), train.videos(), 1.0, true);
                logits = step.logits();
                loss = step.loss();
                putGradients(out, tids, labels);
            } else {
                Qwen25VLModel.Sequence seq = model.newSequence(tids.length);
                Tensor hidden = model.prefill(seq, tids, train.images(), train.videos(), null);
                logits = be.toHost(model.languageModel().logits(hidden));
                loss = crossEntropy(logits, vocab, labels);
            }
            out.put("train_loss", Tensor.of(new float[]{(float) loss}, 1));
            if (!c.generate()) putLogits(out, logits, tids.length, vocab);
        }
        return out;
    }

    /** Row-sparse parameters: the embedding table (rows of the input ids) and the LM head (rows of the labels). */
    static final String EMBED = "model.embed_tokens.weight", HEAD = "lm_head.weight";

    private void putGradients(Map<String, Tensor> out, int[] ids, long[] labels) {
        Qwen25VLModel model = vlm.model();
        for (Parameter p : trainable.grad().parameters().values()) {
            String name = p.name();
            float[] g = p.grad();
            if (name.equals(EMBED) || name.equals(HEAD)) {
                long[] rows = name.equals(EMBED) ? Arrays.stream(ids).asLongStream().distinct().sorted().toArray()
                        : Arrays.stream(labels).skip(1).filter(y -> y != -100).distinct().sorted().toArray();
                int d = (int) p.tensor().dim(1);
                float[] sel = new float[rows.length * d];
                for (int i = 0; i < rows.length; i++) System.arraycopy(g, (int) rows[i] * d, sel, i * d, d);
                out.put("grad." + name, Tensor.of(sel, rows.length, d));
                out.put("grad." + name + ".rows", Tensor.ofLongs(rows, rows.length));
            } else {
                long[] shape = model.checkpoint().contains(name) ? model.checkpoint().get(name).shape() : p.tensor().shape();
                out.put("grad." + name, Tensor.of(g.clone(), shape));
            }
        }
    }

    private static void putMedia(Map<String, Tensor> out, VisionLanguageModel.Prompt p) {
        if (p.images() != null) {
            out.put("pixel_values", p.images().pixelValues());
            out.put("image_grid_thw", grids(p.images().grids()));
        }
        if (p.videos() != null) {
            out.put("pixel_values_videos", p.videos().pixelValues());
            out.put("video_grid_thw", grids(p.videos().grids()));
            float[] s = new float[p.videos().secondsPerGrid().size()];
            for (int i = 0; i < s.length; i++) s[i] = p.videos().secondsPerGrid().get(i).floatValue();
            out.put("second_per_grid_ts", Tensor.of(s, s.length));
        }
    }

    private static void putLogits(Map<String, Tensor> out, float[] logits, int n, int vocab) {
        float[] vals = new float[n * 20], lse = new float[n];
        long[] idx = new long[n * 20];
        for (int r = 0; r < n; r++) {
            int[] top = topK(logits, r * vocab, vocab, 20);
            for (int k = 0; k < 20; k++) {
                idx[r * 20 + k] = top[k];
                vals[r * 20 + k] = logits[r * vocab + top[k]];
            }
            lse[r] = (float) logSumExp(logits, r * vocab, vocab);
        }
        out.put("logits_top20_values", Tensor.of(vals, n, 20));
        out.put("logits_top20_ids", Tensor.ofLongs(idx, n, 20));
        out.put("logits_logsumexp", Tensor.of(lse, n));
    }

    /** Mean cross-entropy of positions t predicting labels[t+1] (labels of -100 are ignored), as transformers shifts. */
    public static double crossEntropy(float[] logits, int vocab, long[] labels) {
        double sum = 0;
        int count = 0;
        for (int t = 0; t + 1 < labels.length; t++) {
            long y = labels[t + 1];
            if (y == -100) continue;
            sum += logSumExp(logits, t * vocab, vocab) - logits[t * vocab + (int) y];
            count++;
        }
        return count == 0 ? Double.NaN : sum / count;
    }

    static double logSumExp(float[] x, int off, int n) {
        double max = Double.NEGATIVE_INFINITY;
        for (int i = 0; i < n; i++) max = Math.max(max, x[off + i]);
        double s = 0;
        for (int i = 0; i < n; i++) s += Math.exp(x[off + i] - max);
        return max + Math.log(s);
    }

    /** Indices of the k largest values of x[off, off+n), largest first (lower index first on ties). */
    static int[] topK(float[] x, int off, int n, int k) {
        int[] best = new int[k];
        Arrays.fill(best, -1);
        for (int i = 0; i < n; i++) {
            float v = x[off + i];
            if (best[k - 1] >= 0 && v <= x[off + best[k - 1]]) continue;
            int j = k - 1;
            while (j > 0 && (best[j - 1] < 0 || v > x[off + best[j - 1]])) {
                best[j] = best[j - 1];
                j--;
            }
            best[j] = i;
        }
        return best;
    }

    private static Tensor ids(int[] ids, long... shape) {
        return Tensor.ofLongs(Arrays.stream(ids).asLongStream().toArray(), shape);
    }

    private static Tensor grids(List<int[]> g) {
        long[] v = new long[g.size() * 3];
        for (int i = 0; i < g.size(); i++) for (int j = 0; j < 3; j++) v[i * 3 + j] = g.get(i)[j];
        return Tensor.ofLongs(v, g.size(), 3);
    }

}
