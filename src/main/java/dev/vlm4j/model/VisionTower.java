package dev.vlm4j.model;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;

import java.util.List;
import java.util.function.BiConsumer;

/**
 * The Qwen2.5-VL vision encoder: patch embedding, {@code depth} pre-norm blocks with 2-D rotary attention (window
 * attention, full attention at {@code fullatt_block_indexes}), and the 2x2 PatchMerger MLP. Input: pixel_values
 * {@code [N, 1176]} of one or more images/videos; output: merged tokens {@code [N/4, out_hidden_size]} in raster
 * order, ready to replace the placeholder embeddings. Written once against {@link Backend}.
 */
public final class VisionTower {
    record Block(Tensor norm1, Tensor qkvW, Tensor qkvB, Tensor projW, Tensor projB, Tensor norm2,
                 Tensor gateW, Tensor gateB, Tensor upW, Tensor upB, Tensor downW, Tensor downB) {}

    private static final float EPS = 1e-6f;
    private final ModelConfig.VisionConfig cfg;
    private final Backend be;
    private final Tensor patchEmbed, lnQ, mlp0W, mlp0B, mlp2W, mlp2B;
    private final Block[] blocks;

    public VisionTower(ModelConfig.VisionConfig cfg, Checkpoint ckpt, Backend be) {
        this.cfg = cfg;
        this.be = be;
        int h = cfg.hiddenSize(), m = cfg.intermediateSize(), p = cfg.patchSize();
        int unit = cfg.spatialMergeSize() * cfg.spatialMergeSize();
        patchEmbed = be.upload(ckpt.get("visual.patch_embed.proj.weight", h, cfg.inChannels(), cfg.temporalPatchSize(), p, p)
                .reshape(h, cfg.patchDim()));
        blocks = new Block[cfg.depth()];
        for (int i = 0; i < blocks.length; i++) {
            String b = "visual.blocks." + i + ".";
            blocks[i] = new Block(
                    be.upload(ckpt.get(b + "norm1.weight", h)),
                    be.upload(ckpt.get(b + "attn.qkv.weight", 3L * h, h)), be.upload(ckpt.get(b + "attn.qkv.bias", 3L * h)),
                    be.upload(ckpt.get(b + "attn.proj.weight", h, h)), be.upload(ckpt.get(b + "attn.proj.bias", h)),
                    be.upload(ckpt.get(b + "norm2.weight", h)),
                    be.upload(ckpt.get(b + "mlp.gate_proj.weight", m, h)), be.upload(ckpt.get(b + "mlp.gate_proj.bias", m)),
                    be.upload(ckpt.get(b + "mlp.up_proj.weight", m, h)), be.upload(ckpt.get(b + "mlp.up_proj.bias", m)),
                    be.upload(ckpt.get(b + "mlp.down_proj.weight", h, m)), be.upload(ckpt.get(b + "mlp.down_proj.bias", h)));
        }
        long mh = (long) h * unit;
        lnQ = be.upload(ckpt.get("visual.merger.ln_q.weight", h));
        mlp0W = be.upload(ckpt.get("visual.merger.mlp.0.weight", mh, mh));
        mlp0B = be.upload(ckpt.get("visual.merger.mlp.0.bias", mh));
        mlp2W = be.upload(ckpt.get("visual.merger.mlp.2.weight", cfg.outHiddenSize(), mh));
        mlp2B = be.upload(ckpt.get("visual.merger.mlp.2.bias", cfg.outHiddenSize()));
    }

    public ModelConfig.VisionConfig config() { return cfg; }

    /**
     * The tensors this module computes with, under their checkpoint names (identity of the uploaded tensors; the
     * patch embedding is the {@code [hidden, patchDim]} view of {@code visual.patch_embed.proj.weight}).
     */
    public java.util.Map<String, Tensor> parameters() {
        java.util.Map<String, Tensor> m = new java.util.LinkedHashMap<>();
        m.put("visual.patch_embed.proj.weight", patchEmbed);
        for (int i = 0; i < blocks.length; i++) {
            Block B = blocks[i];
            String b = "visual.blocks." + i + ".";
            m.put(b + "norm1.weight", B.norm1);
            m.put(b + "attn.qkv.weight", B.qkvW);
            m.put(b + "attn.qkv.bias", B.qkvB);
            m.put(b + "attn.proj.weight", B.projW);
            m.put(b + "attn.proj.bias", B.projB);
            m.put(b + "norm2.weight", B.norm2);
            m.put(b + "mlp.gate_proj.weight", B.gateW);
            m.put(b + "mlp.gate_proj.bias", B.gateB);
            m.put(b + "mlp.up_proj.weight", B.upW);
            m.put(b + "mlp.up_proj.bias", B.upB);
            m.put(b + "mlp.down_proj.weight", B.downW);
            m.put(b + "mlp.down_proj.bias", B.downB);
        }
        m.put("visual.merger.ln_q.weight", lnQ);
        m.put("visual.merger.mlp.0.weight", mlp0W);
        m.put("visual.merger.mlp.0.bias", mlp0B);
        m.put("visual.merger.mlp.2.weight", mlp2W);
        m.put("visual.merger.mlp.2.bias", mlp2B);
        return m;
    }

    /**
     * Encodes the concatenated pixel_values of the items with the given grids ({@code [t, h, w]} in patches).
     * {@code tap} (optional) receives vision.patch_embed (pixel_values order), vision.blockK (window order) and
     * vision.merger (window order, as transformers' merger returns it before the reorder is undone).
     */
    public Tensor encode(Tensor pixelValues, List<int[]> grids, BiConsumer<String, Tensor> tap) {
        int n = (int) pixelValues.dim(0), merge = cfg.spatialMergeSize(), unit = merge * merge;
        long expected = 0;
        for (int[] g : grids) expected += (long) g[0] * g[1] * g[2];
        if (expected != n)
            throw new IllegalArgumentException("pixel_values has " + n + " rows but the grids describe " + expected + " patches");
        if (pixelValues.dim(1) != cfg.patchDim())
            throw new IllegalArgumentException("pixel_values rows have " + pixelValues.dim(1) + " values, the model expects " + cfg.patchDim());
        Tensor x = be.linear(pixelValues, patchEmbed, null);
        if (tap != null) tap.accept("vision.patch_embed", x);

        VisionWindows win = new VisionWindows(grids, merge, cfg.windowSize(), cfg.patchSize());
        int[] order = win.patchOrder(unit);
        x = be.gatherRows(x, order);
        int hd = cfg.headDim();
        float[][] rot = rotaryTables(grids, order, hd);
        Tensor cos = be.fromHost(rot[0], n, hd), sin = be.fromHost(rot[1], n, hd);
        AttentionMask full = AttentionMask.segments(win.cuSeqlens), window = AttentionMask.segments(win.cuWindowSeqlens);
        int h = cfg.hiddenSize();
        for (int i = 0; i < blocks.length; i++) {
            Block B = blocks[i];
            AttentionMask mask = cfg.isFullAttention(i) ? full : window;
            x = be.checkpoint("visual.blocks." + i, x, in -> block(B, in, cos, sin, mask));
            if (tap != null) tap.accept("vision.block" + i, x);
        }
        Tensor z = be.view(be.rmsNorm(x, lnQ, EPS), n / unit, (long) h * unit);
        z = be.linear(be.gelu(be.linear(z, mlp0W, mlp0B)), mlp2W, mlp2B);
        // The reference tap "vision.merger" is the merger's output before the window order is undone.
        if (tap != null) tap.accept("vision.merger", z);
        return be.gatherRows(z, win.reverseIndex);
    }

    /**
     * One ViT block over all patches {@code x} (window order): attention within the mask's segments, then the MLP,
     * each with its residual. The halves are methods of their own so that each half's intermediates (hundreds of MB
     * for a large image) are unreachable once it returns, also while this method still runs in the interpreter, whose
     * frames keep every local variable alive to the end of the method.
     */
    private Tensor block(Block B, Tensor x, Tensor cos, Tensor sin, AttentionMask mask) {
        x = be.add(x, attentionHalf(B, x, cos, sin, mask));
        return be.add(x, mlpHalf(B, x));
    }

    /** {@code proj(attention(rotary(q), rotary(k), v))} of {@code RMSNorm_1(x)}, without the residual. */
    private Tensor attentionHalf(Block B, Tensor x, Tensor cos, Tensor sin, AttentionMask mask) {
        int n = (int) x.dim(0), h = cfg.hiddenSize(), heads = cfg.numHeads();
        Tensor qkv = be.linear(be.rmsNorm(x, B.norm1, EPS), B.qkvW, B.qkvB);
        Tensor q = be.columns(qkv, 0, h), k = be.columns(qkv, h, 2 * h), v = be.columns(qkv, 2 * h, 3 * h);
        qkv = null;   // not needed past here (the interpreter would keep it to the end of the method)
        be.rotary(q, heads, cos, sin);
        be.rotary(k, heads, cos, sin);
        return be.linear(be.attention(q, k, v, n, heads, heads, mask), B.projW, B.projB);
    }

    /** {@code down(silu(gate(n)) * up(n))} of {@code n = RMSNorm_2(x)}, without the residual. */
    private Tensor mlpHalf(Block B, Tensor x) {
        Tensor[] gu = be.linears(be.rmsNorm(x, B.norm2, EPS), new Tensor[]{B.gateW, B.upW}, new Tensor[]{B.gateB, B.upB});
        return be.linear(be.siluMul(gu[0], gu[1]), B.downW, B.downB);
    }

    /**
     * cos/sin tables {@code [n, headDim]} in window order. Patch row r (pixel_values order) of a grid sits at row
     * {@code 2*bh + mh}, column {@code 2*bw + mw}; its angles are {@code [h * inv, w * inv]} repeated twice, with
     * {@code inv[j] = 1 / 10000^(2j / (headDim/2))}, j < headDim/4.
     */
    private float[][] rotaryTables(List<int[]> grids, int[] order, int hd) {
        int quarter = hd / 4, half = hd / 2, merge = cfg.spatialMergeSize();
        float[] inv = new float[quarter];
        for (int j = 0; j < quarter; j++) inv[j] = (float) (1.0 / Math.pow(10000.0, (float) (2 * j) / half));
        int n = order.length;
        int[] rowH = new int[n], rowW = new int[n];
        int base = 0;
        for (int[] g : grids) {
            int t = g[0], gh = g[1], gw = g[2], bhN = gh / merge, bwN = gw / merge;
            int r = base;
            for (int k = 0; k < t; k++)
                for (int bh = 0; bh < bhN; bh++)
                    for (int bw = 0; bw < bwN; bw++)
                        for (int mh = 0; mh < merge; mh++)
                            for (int mw = 0; mw < merge; mw++, r++) {
                                rowH[r] = bh * merge + mh;
                                rowW[r] = bw * merge + mw;
                            }
            base = r;
        }
        float[] cos = new float[n * hd], sin = new float[n * hd];
        for (int i = 0; i < n; i++) {
            int src = order[i];
            for (int j = 0; j < quarter; j++) {
                float ah = (float) rowH[src] * inv[j], aw = (float) rowW[src] * inv[j];
                float ch = (float) Math.cos(ah), sh = (float) Math.sin(ah), cw = (float) Math.cos(aw), sw = (float) Math.sin(aw);
                int o = i * hd;
                cos[o + j] = ch; cos[o + quarter + j] = cw; cos[o + half + j] = ch; cos[o + half + quarter + j] = cw;
                sin[o + j] = sh; sin[o + quarter + j] = sw; sin[o + half + j] = sh; sin[o + half + quarter + j] = sw;
            }
        }
        return new float[][]{cos, sin};
    }
}
