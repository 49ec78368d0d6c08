package dev.vlm4j.model;

import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.BiConsumer;

/**
 * {@code Qwen2_5_VLForConditionalGeneration}: the vision tower, the language model, and the glue between them
 * (placeholder embedding scatter, 3-D positions). Shapes come from config.json only.
 */
public final class Qwen25VLModel implements AutoCloseable {
    /** Pixel values of the vision items of one request, in prompt order, and their grids. */
    public record VisionInput(Tensor pixelValues, List<int[]> grids, List<Double> secondsPerGrid, boolean video) {
        /**
         * The inputs of several sequences one after the other (patch rows, grids and seconds per grid in order),
         * for a packed forward; null when none has any.
         */
        public static VisionInput concat(List<VisionInput> parts) {
            List<int[]> grids = new ArrayList<>();
            List<Double> spg = new ArrayList<>();
            long rows = 0, cols = -1;
            boolean video = false;
            for (VisionInput v : parts) {
                if (v == null || v.grids().isEmpty()) continue;
                if (cols >= 0 && v.pixelValues().dim(1) != cols)
                    throw new IllegalArgumentException("pixel rows of " + v.pixelValues().dim(1) + " and " + cols + " values cannot be packed");
                cols = v.pixelValues().dim(1);
                rows += v.pixelValues().dim(0);
                video |= v.video();
                for (int g = 0; g < v.grids().size(); g++) {
                    grids.add(v.grids().get(g));
                    spg.add(v.secondsPerGrid() == null || v.secondsPerGrid().size() <= g ? 1.0 : v.secondsPerGrid().get(g));
                }
            }
            if (grids.isEmpty()) return null;
            float[] px = new float[Math.toIntExact(rows * cols)];
            int at = 0;
            for (VisionInput v : parts) {
                if (v == null || v.grids().isEmpty()) continue;
                float[] a = v.pixelValues().toFloatArray();
                System.arraycopy(a, 0, px, at, a.length);
                at += a.length;
            }
            return new VisionInput(Tensor.of(px, rows, cols), grids, spg, video);
        }
    }

    /** The state of one sequence after prefill: its cache and the rope delta for decoding. */
    public static final class Sequence {
        public final KvCache cache;
        public long ropeDelta;

        Sequence(KvCache cache) { this.cache = cache; }
    }

    private final ModelConfig config;
    private final Checkpoint checkpoint;
    private final Backend backend;
    private final LanguageModel lm;
    private final VisionTower vision;

    private Qwen25VLModel(ModelConfig config, Checkpoint ckpt, Backend backend) {
        this.config = config;
        this.checkpoint = ckpt;
        this.backend = backend;
        this.lm = new LanguageModel(config.text(), ckpt, backend);
        this.vision = ckpt.contains("visual.patch_embed.proj.weight") ? new VisionTower(config.vision(), ckpt, backend) : null;
    }

    public static Qwen25VLModel load(Path dir, Backend backend) {
        return load(dir, backend, List.of());
    }

    /** Loads a checkpoint folder with LoRA adapters merged into its weights (applied in order). */
    public static Qwen25VLModel load(Path dir, Backend backend, List<dev.vlm4j.model.adapter.LoraAdapter> adapters) {
        return load(dir, backend, adapters, c -> {});
    }

    /**
     * Same, with {@code prepare} run on the opened checkpoint after the merges and before the weights are read (it may
     * {@link Checkpoint#override override} tensors, e.g. with float32 copies that full fine-tuning updates in place).
     */
    public static Qwen25VLModel load(Path dir, Backend backend, List<dev.vlm4j.model.adapter.LoraAdapter> adapters,
                                     java.util.function.Consumer<Checkpoint> prepare) {
        ModelConfig cfg = ModelConfig.load(dir);
        Checkpoint ckpt = Checkpoint.open(dir);
        try {
            for (var a : adapters) a.mergeInto(ckpt);
            prepare.accept(ckpt);
            return new Qwen25VLModel(cfg, ckpt, backend);
        } catch (RuntimeException e) {
            ckpt.close();
            throw e;
        }
    }

    public ModelConfig config() { return config; }
    public Backend backend() { return backend; }
    public LanguageModel languageModel() { return lm; }
    public VisionTower visionTower() { return vision; }
    public Checkpoint checkpoint() { return checkpoint; }

    public Sequence newSequence(int capacity) { return new Sequence(lm.newCache(capacity)); }

    /**
     * A new sequence with room for {@code capacity} tokens that starts as a copy of the first {@code n} tokens of
     * {@code src} (e.g. a prompt prefilled once for several choices), with its rope delta.
     */
    public Sequence copyPrefix(Sequence src, int n, int capacity) {
        Sequence s = new Sequence(src.cache.copyPrefix(n, capacity));
        s.ropeDelta = src.ropeDelta;
        return s;
    }

    /**
     * Input embeddings of a prompt: token embeddings with the placeholder rows ({@code <|image_pad|>},
     * {@code <|video_pad|>}) replaced by the vision tower's outputs, in order. Also returns the 3-D positions.
     */
    public Prefill embedPrompt(int[] ids, VisionInput images, VisionInput videos, BiConsumer<String, Tensor> tap) {
        Tensor x = lm.embed(ids);
        scatter(x, ids, images, config.imageTokenId(), tap, "image");
        scatter(x, ids, videos, config.videoTokenId(), tap, "video");
        RopeIndex.Result r = ropeIndex(ids, images, videos, new int[2]);
        return new Prefill(x, r.positions(), r.ropeDelta());
    }

    /**
     * The 3-D positions of one sequence whose images and videos are {@code images.grids()} / {@code videos.grids()}
     * from {@code cursor[0]} / {@code cursor[1]} on, in placeholder order; advances the cursors past them.
     */
    private RopeIndex.Result ropeIndex(int[] ids, VisionInput images, VisionInput videos, int[] cursor) {
        List<RopeIndex.Grid> grids = new ArrayList<>();
        // Grids in prompt order: images and videos interleave as their placeholders do.
        int ii = cursor[0], vi = cursor[1];
        int merge = config.vision().spatialMergeSize();
        for (int i = 0; i < ids.length; ) {
            if (ids[i] == config.imageTokenId() && images != null && ii < images.grids().size()) {
                int[] g = images.grids().get(ii++);
                grids.add(new RopeIndex.Grid(g[0], g[1], g[2], 0, false));
                i += Math.max(1, g[0] * (g[1] / merge) * (g[2] / merge));
            } else if (ids[i] == config.videoTokenId() && videos != null && vi < videos.grids().size()) {
                int[] g = videos.grids().get(vi);
                double spg = videos.secondsPerGrid() == null || videos.secondsPerGrid().size() <= vi ? 1.0 : videos.secondsPerGrid().get(vi);
                vi++;
                grids.add(new RopeIndex.Grid(g[0], g[1], g[2], spg, true));
                i += Math.max(1, g[0] * (g[1] / merge) * (g[2] / merge));
            } else {
                i++;
            }
        }
        cursor[0] = ii;
        cursor[1] = vi;
        return RopeIndex.compute(ids, grids, config.imageTokenId(), config.videoTokenId(), merge, config.vision().tokensPerSecond());
    }

    /** Embeddings and positions of a prompt, ready for the decoder. */
    public record Prefill(Tensor embeddings, long[][] positions, long ropeDelta) {}

    private void scatter(Tensor x, int[] ids, VisionInput in, int tokenId, BiConsumer<String, Tensor> tap, String what) {
        int count = 0;
        for (int id : ids) if (id == tokenId) count++;
        if (in == null || in.grids().isEmpty()) {
            if (count > 0) throw new IllegalArgumentException("the prompt has " + count + " " + what + " placeholder tokens but no " + what + " was given");
            return;
        }
        if (vision == null) throw new IllegalArgumentException("this checkpoint has no vision tower (visual.* weights)");
        Tensor feats = vision.encode(in.pixelValues(), in.grids(), tap);
        if (feats.dim(0) != count)
            throw new IllegalArgumentException(what + " features and " + what + " tokens do not match: tokens " + count
                    + ", features " + feats.dim(0));
        int[] rows = new int[count];
        for (int i = 0, k = 0; i < ids.length; i++) if (ids[i] == tokenId) rows[k++] = i;
        backend.scatterRows(x, rows, feats);
    }

    /** Runs a prompt into a fresh sequence; returns the final-normed hidden states {@code [L, hidden]}. */
    public Tensor prefill(Sequence seq, int[] ids, VisionInput images, VisionInput videos, BiConsumer<String, Tensor> tap) {
        Prefill p = embedPrompt(ids, images, videos, tap);
        seq.ropeDelta = p.ropeDelta();
        if (seq.cache.length() != 0) throw new IllegalStateException("prefill needs an empty sequence");
        return lm.forward(p.embeddings(), p.positions(), seq.cache, tap);
    }

    /**
     * Every parameter of the model under its checkpoint name (language model, then vision tower), as the tensors
     * the model computes with: the identities a recording backend registers as trainable leaves.
     */
    public java.util.Map<String, Tensor> parameters() {
        java.util.Map<String, Tensor> m = new java.util.LinkedHashMap<>(lm.parameters());
        if (vision != null) m.putAll(vision.parameters());
        return m;
    }

    /**
     * The training forward over a whole sequence (prompt and answer): the same code path as prefill, into a fresh
     * cache sized for the sequence (its writes are in-place row copies a recording backend tracks). Returns the
     * logits {@code [ids.length, vocab]}; position t predicts token t + 1.
     */
    public Tensor trainingLogits(int[] ids, VisionInput images, VisionInput videos) {
        return lm.logits(trainingHidden(ids, images, videos));
    }

    /** {@link #trainingLogits} before the LM head: the final-normed hidden states {@code [ids.length, hidden]}. */
    public Tensor trainingHidden(int[] ids, VisionInput images, VisionInput videos) {
        Sequence seq = newSequence(ids.length);
        return prefill(seq, ids, images, videos, null);
    }

    /**
     * The padding_free training forward: several whole sequences concatenated into one row of
     * {@code sum(len_i)} tokens, every sequence with its own positions (from 0, M-RoPE per sequence) and attention
     * within itself only; the images and videos of all sequences (in order) go through the vision tower in one pass,
     * each attending within itself. Returns the logits {@code [sum(len_i), vocab]} (row t predicts token t + 1 of
     * the same sequence; the last row of a sequence predicts nothing).
     */
    public Tensor packedTrainingLogits(List<int[]> sequences, VisionInput images, VisionInput videos) {
        return lm.logits(packedTrainingHidden(sequences, images, videos));
    }

    /** {@link #packedTrainingLogits} before the LM head: the final-normed hidden states {@code [sum(len_i), hidden]}. */
    public Tensor packedTrainingHidden(List<int[]> sequences, VisionInput images, VisionInput videos) {
        int total = 0;
        int[] cu = new int[sequences.size() + 1];
        for (int s = 0; s < sequences.size(); s++) cu[s + 1] = total += sequences.get(s).length;
        int[] ids = new int[total];
        for (int s = 0; s < sequences.size(); s++) System.arraycopy(sequences.get(s), 0, ids, cu[s], sequences.get(s).length);
        Tensor x = lm.embed(ids);
        scatter(x, ids, images, config.imageTokenId(), null, "image");
        scatter(x, ids, videos, config.videoTokenId(), null, "video");
        long[][] pos = new long[3][total];
        int[] cursor = new int[2];
        for (int s = 0; s < sequences.size(); s++) {
            long[][] p = ropeIndex(sequences.get(s), images, videos, cursor).positions();
            for (int a = 0; a < 3; a++) System.arraycopy(p[a], 0, pos[a], cu[s], p[a].length);
        }
        return lm.forward(x, pos, lm.newCache(total), null, cu);
    }

    /** Appends text tokens to a sequence (decoding); returns their hidden states. */
    public Tensor extend(Sequence seq, int[] ids) {
        if (ids.length == 1) return step(List.of(seq), ids, false);   // decoding: the replayable step
        long[][] pos = RopeIndex.decodePositions(seq.cache.length(), ids.length, seq.ropeDelta);
        return lm.forward(lm.embed(ids), pos, seq.cache, null);
    }

    /**
     * One decode step for several sequences together: appends {@code tokens[i]} to {@code seqs.get(i)} and returns
     * each sequence's next-token logits {@code [B][vocab]}.
     */
    public float[][] decodeBatch(List<Sequence> seqs, int[] tokens) {
        int b = seqs.size();
        float[] all = backend.toHost(step(seqs, tokens, true));
        int v = config.text().vocabSize();
        float[][] out = new float[b][];
        for (int i = 0; i < b; i++) out[i] = java.util.Arrays.copyOfRange(all, i * v, (i + 1) * v);
        return out;
    }

    /** {@link #decodeBatchLogits}, one array per row. */
    public float[][] decodeBatch(List<Sequence> seqs, int[] tokens, List<Tensor> extraRows) {
        float[] all = decodeBatchLogits(seqs, tokens, extraRows, null);
        int v = config.text().vocabSize(), rows = seqs.size() + extraRows.size();
        float[][] out = new float[rows][];
        for (int i = 0; i < rows; i++) out[i] = java.util.Arrays.copyOfRange(all, i * v, (i + 1) * v);
        return out;
    }

    /**
     * One decode step for several sequences together whose LM head product also takes {@code extraRows}: final-normed
     * hidden rows computed elsewhere, typically {@link #lastHiddenRow} of prompts prefilled in the same serving step,
     * so that the vocabulary-sized weight is read once for all of them. Appends {@code tokens[i]} to
     * {@code seqs.get(i)} ({@code seqs} may be empty). Returns the logits row-major, each sequence's then each extra
     * row's ({@code rows * vocab} values), in {@code into} when it is large enough (a buffer reused from step to step,
     * which may be longer; the CPU backend computes straight into it), else in a new array.
     * On the CPU backend every row is computed alone (below {@code vlm4j.gemmMinRows} rows: 64 for bf16 weights, 16
     * otherwise), so an extra row's logits equal {@link #lastLogits} of its prefill, and a sequence's equal those of
     * decoding it alone.
     */
    public float[] decodeBatchLogits(List<Sequence> seqs, int[] tokens, List<Tensor> extraRows, float[] into) {
        if (seqs.isEmpty() && extraRows.isEmpty()) return into != null ? into : new float[0];
        Tensor hidden = seqs.isEmpty() ? null : step(seqs, tokens, false);
        if (!extraRows.isEmpty()) {
            int h = config.text().hiddenSize(), b = seqs.size(), rows = b + extraRows.size();
            float[] all = new float[rows * h];
            if (hidden != null) System.arraycopy(backend.toHost(hidden), 0, all, 0, b * h);
            for (int i = 0; i < extraRows.size(); i++) System.arraycopy(backend.toHost(extraRows.get(i)), 0, all, (b + i) * h, h);
            hidden = backend.fromHost(all, rows, h);
        }
        return lm.logitsToHost(hidden, into);
    }

    /**
     * One greedy decode step for several sequences together: appends {@code tokens[i]} to {@code seqs.get(i)} and
     * returns each sequence's most likely next token (the argmax is taken on the backend; only B ints come back).
     */
    public int[] decodeBatchGreedy(List<Sequence> seqs, int[] tokens) {
        return backend.argmaxRows(step(seqs, tokens, true));
    }

    /**
     * One decode step for {@code seqs} (each appends its token): the hidden states, or the logits when
     * {@code logits}. The work between the cache bookkeeping runs through {@link dev.vlm4j.compute.Backend#graph}, so
     * a backend can replay it (CUDA graphs, keyed by batch size and output); the result is valid until the next step.
     */
    private Tensor step(List<Sequence> seqs, int[] tokens, boolean logits) {
        int b = seqs.size();
        if (tokens.length != b) throw new IllegalArgumentException(b + " sequences but " + tokens.length + " tokens");
        long[][] pos = new long[3][b];
        KvCache[] caches = new KvCache[b];
        for (int i = 0; i < b; i++) {
            Sequence s = seqs.get(i);
            caches[i] = s.cache;
            pos[0][i] = pos[1][i] = pos[2][i] = s.cache.length() + s.ropeDelta;
        }
        for (KvCache c : caches) c.reserve(1);
        Tensor out = backend.graph(new StepKey(this, b, logits), () -> {
            Tensor h = lm.decodeStep(lm.embed(tokens), pos, caches);
            return logits ? lm.logits(h) : h;
        });
        for (KvCache c : caches) c.advance(1);
        return out;
    }

    /** The key of a replayable decode step: the model (by identity), the batch size, whether it ends with the LM head. */
    private record StepKey(Qwen25VLModel model, int batch, boolean logits) {}

    /** Logits of the last row of {@code hidden}. */
    public float[] lastLogits(Tensor hidden) {
        return backend.toHost(lm.logits(lastHiddenRow(hidden)));
    }

    /** The last row of {@code hidden} ({@code [1, hidden]}): what {@link #lastLogits} takes the LM head of. */
    public Tensor lastHiddenRow(Tensor hidden) {
        int rows = (int) (hidden.numel() / hidden.dim(-1));
        Tensor last = hidden.reshape(rows, hidden.dim(-1));
        return rows > 1 ? backend.gatherRows(last, new int[]{rows - 1}) : last;
    }

    @Override
    public void close() {
        backend.close();
        checkpoint.close();
    }
}
