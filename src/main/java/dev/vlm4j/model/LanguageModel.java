package dev.vlm4j.model;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;

import java.util.List;
import java.util.function.BiConsumer;

/**
 * The Qwen2 decoder of Qwen2.5-VL: embeddings, {@code num_hidden_layers} pre-norm blocks (GQA attention with
 * q/k/v biases and M-RoPE, SwiGLU MLP), final RMSNorm and the LM head. Written once against {@link Backend}.
 */
public final class LanguageModel {
    /** One decoder layer's weights, under their Hugging Face names {@code model.layers.N.*}. */
    record Layer(Tensor inputNorm, Tensor qW, Tensor qB, Tensor kW, Tensor kB, Tensor vW, Tensor vB, Tensor oW,
                 Tensor postNorm, Tensor gateW, Tensor upW, Tensor downW) {}

    private final ModelConfig.TextConfig cfg;
    private final Backend be;
    private final Tensor embedTokens, norm, lmHead;
    private final Layer[] layers;
    private final MRope rope;
    private final float eps;

    public LanguageModel(ModelConfig.TextConfig cfg, Checkpoint ckpt, Backend be) {
        this.cfg = cfg;
        this.be = be;
        int h = cfg.hiddenSize(), qd = cfg.numHeads() * cfg.headDim(), kvd = cfg.numKvHeads() * cfg.headDim(), m = cfg.intermediateSize();
        embedTokens = be.uploadVocabTable(ckpt.get("model.embed_tokens.weight", cfg.vocabSize(), h));
        norm = be.upload(ckpt.get("model.norm.weight", h));
        Tensor head = ckpt.getOrNull("lm_head.weight", cfg.vocabSize(), h);
        if (head == null && !cfg.tieWordEmbeddings())
            throw new dev.vlm4j.tensor.safetensors.CheckpointException(ckpt.dir()
                    + ": checkpoint has no lm_head.weight and config.json does not set tie_word_embeddings");
        lmHead = head == null ? embedTokens : be.uploadVocabTable(head);
        layers = new Layer[cfg.numLayers()];
        for (int i = 0; i < layers.length; i++) {
            String p = "model.layers." + i + ".";
            layers[i] = new Layer(
                    be.upload(ckpt.get(p + "input_layernorm.weight", h)),
                    be.upload(ckpt.get(p + "self_attn.q_proj.weight", qd, h)), be.upload(ckpt.get(p + "self_attn.q_proj.bias", qd)),
                    be.upload(ckpt.get(p + "self_attn.k_proj.weight", kvd, h)), be.upload(ckpt.get(p + "self_attn.k_proj.bias", kvd)),
                    be.upload(ckpt.get(p + "self_attn.v_proj.weight", kvd, h)), be.upload(ckpt.get(p + "self_attn.v_proj.bias", kvd)),
                    be.upload(ckpt.get(p + "self_attn.o_proj.weight", h, qd)),
                    be.upload(ckpt.get(p + "post_attention_layernorm.weight", h)),
                    be.upload(ckpt.get(p + "mlp.gate_proj.weight", m, h)),
                    be.upload(ckpt.get(p + "mlp.up_proj.weight", m, h)),
                    be.upload(ckpt.get(p + "mlp.down_proj.weight", h, m)));
        }
        rope = new MRope(cfg.headDim(), cfg.ropeTheta(), cfg.mropeSection());
        eps = (float) cfg.rmsNormEps();
    }

    public ModelConfig.TextConfig config() { return cfg; }
    public Backend backend() { return be; }

    public KvCache newCache(int capacity) {
        return new KvCache(be, cfg.numLayers(), cfg.numKvHeads() * cfg.headDim(), capacity);
    }

    /** Token embeddings {@code [ids.length, hidden]}. */
    public Tensor embed(int[] ids) { return be.embedding(embedTokens, ids); }

    /**
     * Runs the decoder over {@code x} (new tokens' input embeddings, {@code [n, hidden]}) at positions
     * {@code pos[3][n]}, appending to {@code cache}. Returns the final-normed hidden states {@code [n, hidden]}.
     * {@code tap}, when given, receives ("hidden_state" + k, tensor) after the embeddings (k = 0) and after each
     * layer (the last one with the final norm applied), as transformers' output_hidden_states does.
     */
    public Tensor forward(Tensor x, long[][] pos, KvCache cache, BiConsumer<String, Tensor> tap) {
        return forward(x, pos, cache, tap, null);
    }

    /**
     * As {@link #forward(Tensor, long[][], KvCache, BiConsumer)}; with {@code cuSeqlens} ({@code [0, n1, n1+n2, ...,
     * n]}) the rows are several sequences packed end to end (padding_free training): each attends causally within
     * its own sequence only. Packed rows need an empty cache.
     */
    public Tensor forward(Tensor x, long[][] pos, KvCache cache, BiConsumer<String, Tensor> tap, int[] cuSeqlens) {
        int n = (int) x.dim(0);
        if (cuSeqlens != null && cache.length() != 0) throw new IllegalArgumentException("packed sequences need an empty cache");
        float[][] cs = rope.tables(pos, 0, n);
        Tensor cos = be.fromHost(cs[0], n, cfg.headDim()), sin = be.fromHost(cs[1], n, cfg.headDim());
        cache.reserve(n);
        int past = cache.length();
        AttentionMask mask = cuSeqlens == null ? AttentionMask.causal(past) : AttentionMask.causalSegments(cuSeqlens);
        if (tap != null) tap.accept("hidden_state0", x);
        for (int li = 0; li < layers.length; li++) {
            int l = li;
            x = be.checkpoint("model.layers." + li, x, in -> layer(l, in, cos, sin, cache, past, mask));
            if (tap != null && li < layers.length - 1) tap.accept("hidden_state" + (li + 1), x);
        }
        cache.advance(n);
        Tensor out = be.rmsNorm(x, norm, eps);
        if (tap != null) tap.accept("hidden_state" + layers.length, out);
        return out;
    }

    /**
     * One decode step for several sequences at once (continuous batching): row i of {@code x} is the next token of
     * the sequence owning {@code caches[i]}, at positions {@code pos[3][i]}. The projections and MLP run as one
     * matrix product over all rows (weights are read once per step); attention reads each sequence's own cache
     * ({@link Backend#appendRows} and {@link Backend#attentionBatch}: one launch each on CUDA).
     * Returns the final-normed hidden states {@code [B, hidden]}.
     */
    public Tensor forwardBatch(Tensor x, long[][] pos, KvCache[] caches) {
        for (KvCache c : caches) c.reserve(1);
        Tensor out = decodeStep(x, pos, caches);
        for (KvCache c : caches) c.advance(1);
        return out;
    }

    /**
     * {@link #forwardBatch} without the cache bookkeeping: the caches must have room for one more row, the new keys
     * and values are written at row {@code length()} of each, and the lengths are not advanced. It changes no
     * host-side state, so a backend may run it as a replayable step ({@link Backend#graph}).
     */
    Tensor decodeStep(Tensor x, long[][] pos, KvCache[] caches) {
        int b = (int) x.dim(0), hq = cfg.numHeads(), hkv = cfg.numKvHeads(), hd = cfg.headDim();
        if (caches.length != b) throw new IllegalArgumentException(b + " rows but " + caches.length + " caches");
        float[][] cs = rope.tables(pos, 0, b);
        Tensor cos = be.fromHost(cs[0], b, hd), sin = be.fromHost(cs[1], b, hd);
        int[] past = new int[b], lens = new int[b];
        for (int i = 0; i < b; i++) {
            past[i] = caches[i].length();
            if (caches[i].capacity() < past[i] + 1) throw new IllegalStateException("decodeStep: cache " + i + " is full");
            lens[i] = past[i] + 1;
        }
        for (int li = 0; li < layers.length; li++) {
            Layer L = layers[li];
            Tensor xn = be.rmsNorm(x, L.inputNorm, eps);
            Tensor[] qkv = be.linears(xn, new Tensor[]{L.qW, L.kW, L.vW}, new Tensor[]{L.qB, L.kB, L.vB});
            Tensor q = qkv[0], k = qkv[1], v = qkv[2];
            be.rotary(q, hq, cos, sin);
            be.rotary(k, hkv, cos, sin);
            Tensor[] ks = new Tensor[b], vs = new Tensor[b];
            for (int i = 0; i < b; i++) {
                ks[i] = caches[i].keys(li);
                vs[i] = caches[i].values(li);
            }
            be.appendRows(ks, past, k);
            be.appendRows(vs, past, v);
            Tensor a = be.attentionBatch(q, ks, vs, lens, hq, hkv);
            Tensor h = be.addLinear(x, a, L.oW);
            x = mlpResidual(h, L);
        }
        return be.rmsNorm(x, norm, eps);
    }

    /**
     * Decoder layer {@code li} over the new tokens {@code x} (rows {@code past..} of the sequence): attention with its
     * keys and values written into the cache at row {@code past}, then the MLP, each with its residual. Re-running
     * it rewrites the same cache rows with the same values (gradient checkpointing re-runs it in the backward).
     */
    private Tensor layer(int li, Tensor x, Tensor cos, Tensor sin, KvCache cache, int past, AttentionMask mask) {
        Layer L = layers[li];
        int n = (int) x.dim(0), hq = cfg.numHeads(), hkv = cfg.numKvHeads();
        Tensor xn = be.rmsNorm(x, L.inputNorm, eps);
        Tensor[] qkv = be.linears(xn, new Tensor[]{L.qW, L.kW, L.vW}, new Tensor[]{L.qB, L.kB, L.vB});
        Tensor q = qkv[0], k = qkv[1], v = qkv[2];
        be.rotary(q, hq, cos, sin);
        be.rotary(k, hkv, cos, sin);
        cache.put(li, past, k, v);
        Tensor a = be.attention(q, cache.keys(li), cache.values(li), past + n, hq, hkv, mask);
        Tensor h = be.addLinear(x, a, L.oW);
        // a segment of its own, so that training may recompute the MLP half alone (see Backend#checkpoint)
        return be.checkpoint("model.layers." + li + ".mlp", h, in -> mlpResidual(in, L));
    }

    /** The second half of a layer: {@code h + down(silu(gate(n)) * up(n))}, {@code n = RMSNorm_post(h)}. */
    private Tensor mlpResidual(Tensor h, Layer L) {
        Tensor hn = be.rmsNorm(h, L.postNorm, eps);
        return be.addLinear(h, be.swiGlu(hn, L.gateW, L.upW), L.downW);
    }

    /**
     * The tensors this module computes with, under their checkpoint names (identity of the uploaded tensors; with
     * tied embeddings {@code lm_head.weight} is absent and the embedding table serves both).
     */
    public java.util.Map<String, Tensor> parameters() {
        java.util.Map<String, Tensor> m = new java.util.LinkedHashMap<>();
        m.put("model.embed_tokens.weight", embedTokens);
        for (int i = 0; i < layers.length; i++) {
            Layer L = layers[i];
            String p = "model.layers." + i + ".";
            Tensor[] t = {L.inputNorm(), L.qW(), L.qB(), L.kW(), L.kB(), L.vW(), L.vB(), L.oW(), L.postNorm(), L.gateW(), L.upW(), L.downW()};
            List<String> names = parameterSuffixes();
            for (int k = 0; k < t.length; k++) m.put(p + names.get(k), t[k]);
        }
        m.put("model.norm.weight", norm);
        if (lmHead != embedTokens) m.put("lm_head.weight", lmHead);
        return m;
    }

    /** Logits {@code [rows, vocab]} of final-normed hidden states. */
    public Tensor logits(Tensor hidden) { return be.linear(hidden, lmHead, null); }

    /** The LM head's weight {@code [vocab, hidden]} as the backend holds it (the embedding table when tied). */
    public Tensor lmHead() { return lmHead; }

    /** {@link #logits} on the host, row-major, in {@code into} when it is large enough (see {@link Backend#linearToHost}). */
    public float[] logitsToHost(Tensor hidden, float[] into) { return be.linearToHost(hidden, lmHead, into); }

    /** Bytes of weights one decode step streams: every layer's linear weights and the LM head, as held by the backend. */
    public long decodeWeightBytes() {
        long b = dev.vlm4j.tensor.Quant.bytesOf(lmHead);
        for (Layer L : layers)
            for (Tensor w : new Tensor[]{L.qW, L.kW, L.vW, L.oW, L.gateW, L.upW, L.downW}) b += dev.vlm4j.tensor.Quant.bytesOf(w);
        return b;
    }

    /** Multiply-adds per token of the layers' linear weights (parameters of the q/k/v/o and MLP projections). */
    public long layerLinearParams() {
        long h = cfg.hiddenSize(), qd = (long) cfg.numHeads() * cfg.headDim(), kvd = (long) cfg.numKvHeads() * cfg.headDim();
        return cfg.numLayers() * (h * qd * 2 + 2 * h * kvd + 3 * h * cfg.intermediateSize());
    }

    /** Names of the parameters this module reads (for checks and training). */
    public static List<String> parameterSuffixes() {
        return List.of("input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.q_proj.bias", "self_attn.k_proj.weight",
                "self_attn.k_proj.bias", "self_attn.v_proj.weight", "self_attn.v_proj.bias", "self_attn.o_proj.weight",
                "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight");
    }
}
