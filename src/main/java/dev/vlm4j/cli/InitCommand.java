package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.model.ModelConfig;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.safetensors.SafeTensorsStreamWriter;
import dev.vlm4j.tensor.safetensors.SafeTensorsStreamWriter.Spec;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j init}: writes a checkpoint folder of a real model's shape with random bf16 weights (normal, std 0.02;
 * norms 1), streamed chunk by chunk, so real sizes can be measured without downloads.
 */
@Command(name = "init", mixinStandardHelpOptions = true,
        description = "Write a model folder with random weights of a given shape (for benchmarks and tests).")
public final class InitCommand implements Callable<Integer> {
    private static final ObjectMapper JSON = new ObjectMapper();

    @Option(names = "--preset", required = true,
            description = "tiny | qwen2.5-vl-3b | qwen2.5-vl-7b | mimo-vl-7b | path to a config.json")
    String preset;

    @Option(names = "--out", required = true, description = "Folder to write (created).")
    Path out;

    @Option(names = "--seed", defaultValue = "0", description = "Random seed (default ${DEFAULT-VALUE}).")
    long seed;

    @Option(names = "--tokenizer-from", description = "Model folder to copy tokenizer/processor files from "
            + "(default: $VLM4J_FIXTURES/tiny-qwen2_5-vl or ../shared/fixtures/tiny-qwen2_5-vl when present).")
    Path tokenizerFrom;

    @Option(names = "--shard-gb", defaultValue = "3", description = "Approximate shard size in GB (default ${DEFAULT-VALUE}).")
    double shardGb;

    static final List<String> SIDE_FILES = List.of("tokenizer.json", "tokenizer_config.json", "chat_template.json",
            "preprocessor_config.json", "generation_config.json", "vocab.json", "merges.txt");

    @Override
    public Integer call() throws Exception {
        ObjectNode config = preset.endsWith(".json") ? (ObjectNode) JSON.readTree(Path.of(preset).toFile()) : presetConfig(preset);
        ModelConfig cfg = ModelConfig.parse(config);
        Files.createDirectories(out);
        JSON.writerWithDefaultPrettyPrinter().writeValue(out.resolve("config.json").toFile(), config);
        Path src = tokenizerFrom != null ? tokenizerFrom : defaultTokenizerDir();
        if (src != null) {
            for (String f : SIDE_FILES)
                if (Files.isRegularFile(src.resolve(f))) {
                    Files.copy(src.resolve(f), out.resolve(f), StandardCopyOption.REPLACE_EXISTING);
                    out.resolve(f).toFile().setWritable(true, true);
                }
        } else {
            System.err.println("init: no tokenizer folder found (use --tokenizer-from DIR); writing weights and config.json only");
        }
        List<Spec> specs = tensors(cfg, seed);
        long bytes = specs.stream().mapToLong(Spec::bytes).sum();
        long t0 = System.nanoTime();
        SafeTensorsStreamWriter.writeSharded(out, specs, (long) (shardGb * 1e9));
        System.out.printf("wrote %s: %d tensors, %.2f GB of bf16 weights in %.1f s%n", out, specs.size(), bytes / 1e9,
                (System.nanoTime() - t0) / 1e9);
        return 0;
    }

    private static Path defaultTokenizerDir() {
        String env = System.getenv("VLM4J_FIXTURES");
        for (String root : new String[]{env, System.getProperty("vlm4j.fixtures"), "../shared/fixtures", "shared/fixtures"}) {
            if (root == null || root.isBlank()) continue;
            Path p = Path.of(root, "tiny-qwen2_5-vl");
            if (Files.isRegularFile(p.resolve("tokenizer.json"))) return p;
        }
        return null;
    }

    /** The published config.json layout (as the fixture's), with the sizes of the named model. */
    static ObjectNode presetConfig(String name) {
        // text: layers, hidden, mlp, heads, kv heads, vocab, tied, theta, eps; vision: depth, mlp
        record P(int layers, int hidden, int mlp, int heads, int kv, int vocab, boolean tied, double theta, double eps,
                 int vDepth, int vHidden, int vMlp, int vHeads, int[] full, int[] section) {}
        int[] fa = {7, 15, 23, 31}, sec = {16, 24, 24};
        P p = switch (name.toLowerCase()) {
            case "tiny" -> new P(2, 64, 128, 4, 2, 151680, false, 1e6, 1e-6, 4, 64, 96, 4, new int[]{1, 3}, new int[]{2, 3, 3});
            case "qwen2.5-vl-3b" -> new P(36, 2048, 11008, 16, 2, 151936, true, 1e6, 1e-6, 32, 1280, 3420, 16, fa, sec);
            case "qwen2.5-vl-7b" -> new P(28, 3584, 18944, 28, 4, 152064, false, 1e6, 1e-6, 32, 1280, 3420, 16, fa, sec);
            case "mimo-vl-7b" -> new P(36, 4096, 11008, 32, 8, 151680, false, 640000, 1e-5, 32, 1280, 3456, 16, fa, sec);
            default -> throw new IllegalArgumentException("unknown preset '" + name + "' (tiny, qwen2.5-vl-3b, qwen2.5-vl-7b, mimo-vl-7b or a config.json)");
        };
        ObjectNode c = JSON.createObjectNode();
        c.putArray("architectures").add("Qwen2_5_VLForConditionalGeneration");
        c.put("model_type", "qwen2_5_vl");
        c.put("attention_dropout", 0.0);
        c.put("bos_token_id", 151643);
        c.put("eos_token_id", 151645);
        c.put("vision_start_token_id", 151652);
        c.put("vision_end_token_id", 151653);
        c.put("vision_token_id", 151654);
        c.put("image_token_id", 151655);
        c.put("video_token_id", 151656);
        c.put("hidden_act", "silu");
        c.put("hidden_size", p.hidden);
        c.put("initializer_range", 0.02);
        c.put("intermediate_size", p.mlp);
        c.put("max_position_embeddings", 128000);
        c.put("max_window_layers", p.layers);
        c.put("num_attention_heads", p.heads);
        c.put("num_hidden_layers", p.layers);
        c.put("num_key_value_heads", p.kv);
        c.put("rms_norm_eps", p.eps);
        c.put("rope_theta", p.theta);
        c.put("sliding_window", 32768);
        c.put("tie_word_embeddings", p.tied);
        c.put("torch_dtype", "bfloat16");
        c.put("transformers_version", "4.49.0");
        c.put("use_cache", true);
        c.put("use_sliding_window", false);
        ObjectNode v = c.putObject("vision_config");
        v.put("depth", p.vDepth);
        v.put("hidden_act", "silu");
        v.put("hidden_size", p.vHidden);
        v.put("intermediate_size", p.vMlp);
        v.put("num_heads", p.vHeads);
        v.put("in_chans", 3);
        v.put("out_hidden_size", p.hidden);
        v.put("patch_size", 14);
        v.put("spatial_merge_size", 2);
        v.put("spatial_patch_size", 14);
        v.put("window_size", 112);
        ArrayNode f = v.putArray("fullatt_block_indexes");
        for (int b : p.full) f.add(b);
        v.put("tokens_per_second", 2);
        v.put("temporal_patch_size", 2);
        ObjectNode r = c.putObject("rope_scaling");
        r.put("type", "mrope");
        ArrayNode s = r.putArray("mrope_section");
        for (int x : p.section) s.add(x);
        c.put("vocab_size", p.vocab);
        return c;
    }

    /** Every tensor the model reads, with its shape and a random filler. */
    static List<Spec> tensors(ModelConfig cfg, long seed) {
        List<Spec> out = new ArrayList<>();
        var t = cfg.text();
        var v = cfg.vision();
        int h = t.hiddenSize(), qd = t.numHeads() * t.headDim(), kvd = t.numKvHeads() * t.headDim(), m = t.intermediateSize();
        int vh = v.hiddenSize(), vm = v.intermediateSize(), unit = v.spatialMergeSize() * v.spatialMergeSize();
        add(out, seed, "visual.patch_embed.proj.weight", false, vh, v.inChannels(), v.temporalPatchSize(), v.patchSize(), v.patchSize());
        for (int i = 0; i < v.depth(); i++) {
            String b = "visual.blocks." + i + ".";
            add(out, seed, b + "norm1.weight", true, vh);
            add(out, seed, b + "norm2.weight", true, vh);
            add(out, seed, b + "attn.qkv.weight", false, 3L * vh, vh);
            add(out, seed, b + "attn.qkv.bias", false, 3L * vh);
            add(out, seed, b + "attn.proj.weight", false, vh, vh);
            add(out, seed, b + "attn.proj.bias", false, vh);
            add(out, seed, b + "mlp.gate_proj.weight", false, vm, vh);
            add(out, seed, b + "mlp.gate_proj.bias", false, vm);
            add(out, seed, b + "mlp.up_proj.weight", false, vm, vh);
            add(out, seed, b + "mlp.up_proj.bias", false, vm);
            add(out, seed, b + "mlp.down_proj.weight", false, vh, vm);
            add(out, seed, b + "mlp.down_proj.bias", false, vh);
        }
        long mh = (long) vh * unit;
        add(out, seed, "visual.merger.ln_q.weight", true, vh);
        add(out, seed, "visual.merger.mlp.0.weight", false, mh, mh);
        add(out, seed, "visual.merger.mlp.0.bias", false, mh);
        add(out, seed, "visual.merger.mlp.2.weight", false, v.outHiddenSize(), mh);
        add(out, seed, "visual.merger.mlp.2.bias", false, v.outHiddenSize());
        add(out, seed, "model.embed_tokens.weight", false, t.vocabSize(), h);
        for (int i = 0; i < t.numLayers(); i++) {
            String p = "model.layers." + i + ".";
            add(out, seed, p + "input_layernorm.weight", true, h);
            add(out, seed, p + "self_attn.q_proj.weight", false, qd, h);
            add(out, seed, p + "self_attn.q_proj.bias", false, qd);
            add(out, seed, p + "self_attn.k_proj.weight", false, kvd, h);
            add(out, seed, p + "self_attn.k_proj.bias", false, kvd);
            add(out, seed, p + "self_attn.v_proj.weight", false, kvd, h);
            add(out, seed, p + "self_attn.v_proj.bias", false, kvd);
            add(out, seed, p + "self_attn.o_proj.weight", false, h, qd);
            add(out, seed, p + "post_attention_layernorm.weight", true, h);
            add(out, seed, p + "mlp.gate_proj.weight", false, m, h);
            add(out, seed, p + "mlp.up_proj.weight", false, m, h);
            add(out, seed, p + "mlp.down_proj.weight", false, h, m);
        }
        add(out, seed, "model.norm.weight", true, h);
        if (!t.tieWordEmbeddings()) add(out, seed, "lm_head.weight", false, t.vocabSize(), h);
        return out;
    }

    private static void add(List<Spec> out, long seed, String name, boolean ones, long... shape) {
        long tseed = seed * 0x9E3779B97F4A7C15L ^ name.hashCode() * 0xC2B2AE3D27D4EB4FL;
        out.add(new Spec(name, DType.BF16, shape, ones ? InitCommand::fillOnes : (off, dst) -> fillNormal(tseed, off, dst)));
    }

    private static void fillOnes(long off, ByteBuffer dst) {
        while (dst.remaining() >= 2) dst.putShort((short) 0x3f80);
    }

    /** bf16 bit patterns of N(0, 0.02) quantiles: a 16-bit random index picks one. */
    private static final short[] NORMAL = normalTable();

    private static short[] normalTable() {
        short[] t = new short[65536];
        for (int i = 0; i < t.length; i++) {
            float x = (float) (0.02 * inverseNormal((i + 0.5) / t.length));
            t[i] = (short) ((Float.floatToRawIntBits(x) + 0x8000) >>> 16);
        }
        return t;
    }

    /** Deterministic in (seed, byte offset): each 4 MiB chunk has its own generator. */
    private static void fillNormal(long seed, long off, ByteBuffer dst) {
        long st = seed ^ (off / SafeTensorsStreamWriter.CHUNK + 1) * 0xD1B54A32D192ED03L;
        while (dst.remaining() >= 8) {
            st += 0x9E3779B97F4A7C15L; // splitmix64
            long z = st;
            z = (z ^ (z >>> 30)) * 0xBF58476D1CE4E5B9L;
            z = (z ^ (z >>> 27)) * 0x94D049BB133111EBL;
            z ^= z >>> 31;
            dst.putShort(NORMAL[(int) (z & 0xffff)]).putShort(NORMAL[(int) (z >>> 16 & 0xffff)])
                    .putShort(NORMAL[(int) (z >>> 32 & 0xffff)]).putShort(NORMAL[(int) (z >>> 48)]);
        }
        while (dst.remaining() >= 2) dst.putShort(NORMAL[(int) (st++ & 0xffff)]);
    }

    /** Acklam's rational approximation of the standard normal quantile (relative error < 1.2e-9). */
    static double inverseNormal(double p) {
        double[] a = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02, 1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
        double[] b = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02, 6.680131188771972e+01, -1.328068155288572e+01};
        double[] c = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00, -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
        double[] d = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00, 3.754408661907416e+00};
        double q, r;
        if (p < 0.02425) {
            q = Math.sqrt(-2 * Math.log(p));
            return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        }
        if (p > 1 - 0.02425) return -inverseNormal(1 - p);
        q = p - 0.5;
        r = q * q;
        return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
}
