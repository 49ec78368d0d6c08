package dev.vlm4j.compute.cuda;

import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/**
 * Batch-1 decode speed of the language model on {@link CudaBackend}, on a random checkpoint shaped like
 * MiMo-VL-7B's decoder (written once to DIR when DIR has no config.json; no vision weights).
 * <pre>java ... dev.vlm4j.compute.cuda.CudaDecodeBench DIR [bf16|f32 ...] [--prompt 128] [--tokens 128] [--layers 36]</pre>
 * Prints load time, prefill time and decode tokens/s (each step: decoder, LM head, logits to the host, argmax).
 */
public final class CudaDecodeBench {
    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]);
        int prompt = 128, tokens = 128, layers = 36;
        java.util.List<Precision> modes = new java.util.ArrayList<>();
        for (int i = 1; i < args.length; i++) {
            switch (args[i]) {
                case "--prompt" -> prompt = Integer.parseInt(args[++i]);
                case "--tokens" -> tokens = Integer.parseInt(args[++i]);
                case "--layers" -> layers = Integer.parseInt(args[++i]);
                default -> modes.add(Precision.valueOf(args[i].toUpperCase()));
            }
        }
        if (modes.isEmpty()) modes.add(Precision.BF16);
        if (!Files.exists(dir.resolve("config.json"))) {
            long t0 = System.nanoTime();
            writeRandomCheckpoint(dir, layers);
            System.out.printf("wrote a random %d-layer MiMo-VL-7B-shaped decoder to %s in %.1f s%n", layers, dir, (System.nanoTime() - t0) / 1e9);
        }
        for (Precision p : modes) run(dir, p, prompt, tokens);
    }

    static void run(Path dir, Precision p, int prompt, int tokens) {
        long t0 = System.nanoTime();
        CudaBackend be = CudaBackend.create(0, p);
        try (Qwen25VLModel model = Qwen25VLModel.load(dir, be)) {
            be.synchronize();
            double load = (System.nanoTime() - t0) / 1e9;
            int vocab = model.config().text().vocabSize();
            SplittableRandom r = new SplittableRandom(1);
            int[] ids = new int[prompt];
            for (int i = 0; i < prompt; i++) ids[i] = r.nextInt(150000);
            for (int rep = 0; rep < 4; rep++) {   // the first round warms up (JIT, cuBLASLt plans, pool)
                boolean graphs = rep != 2, fused = rep != 3;   // round 2: without CUDA graphs; 3: warp-per-row gemv
                be.useGraphs(graphs);
                be.useFusedGemv(fused);
                var seq = model.newSequence(prompt + tokens + 8);
                long a = System.nanoTime();
                float[] last = model.lastLogits(model.prefill(seq, ids, null, null, null));
                double prefill = (System.nanoTime() - a) / 1e9;
                long b = System.nanoTime(), issue = 0;
                for (int s = 0; s < tokens; s++) {
                    int arg = 0;
                    for (int j = 1; j < vocab; j++) if (last[j] > last[arg]) arg = j;
                    long i0 = System.nanoTime();
                    Tensor h = model.extend(seq, new int[]{arg});
                    issue += System.nanoTime() - i0;
                    last = model.lastLogits(h);
                }
                double dec = (System.nanoTime() - b) / 1e9;
                if (rep >= 1)
                    System.out.printf("  host time to queue one decoder step (no wait): %.2f ms/token%n", issue / 1e6 / tokens);
                if (rep >= 1)
                    System.out.printf("%s%s on %s [%s]: load %.1f s, prefill %d tokens %.3f s (%.0f tok/s), decode %d tokens %.3f s = %.2f tok/s (%.2f ms/token), device memory held %.2f GiB (peak %.2f)%n",
                            p, (graphs ? " (CUDA graphs" : " (eager launches") + (fused ? ", fused gemv)" : ", warp-per-row gemv, unfused)"), be.deviceName(), dir.getFileName(), load, prompt, prefill, prompt / prefill, tokens, dec, tokens / dec,
                            1000 * dec / tokens, be.deviceBytes()[0] / 1073741824.0, be.deviceBytes()[1] / 1073741824.0);
            }
        }
    }

    /** Random bf16 weights (uniform, std 0.02), unit norms, small biases, with MiMo-VL-7B's decoder sizes. */
    static void writeRandomCheckpoint(Path dir, int layers) throws Exception {
        int h = 4096, m = 11008, heads = 32, kv = 8, hd = 128, vocab = 151680;
        Files.createDirectories(dir);
        String cfg = """
                {"architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl",
                 "hidden_size": %d, "intermediate_size": %d, "num_hidden_layers": %d, "num_attention_heads": %d,
                 "num_key_value_heads": %d, "rms_norm_eps": 1e-05, "rope_theta": 640000.0, "vocab_size": %d,
                 "tie_word_embeddings": false, "image_token_id": 151655, "video_token_id": 151656,
                 "vision_start_token_id": 151652, "vision_end_token_id": 151653, "vision_token_id": 151654,
                 "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
                 "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3456, "num_heads": 16,
                   "in_chans": 3, "out_hidden_size": %d, "patch_size": 14, "spatial_merge_size": 2,
                   "spatial_patch_size": 14, "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                   "tokens_per_second": 2, "temporal_patch_size": 2}}
                """.formatted(h, m, layers, heads, kv, vocab, h);
        Files.writeString(dir.resolve("config.json"), cfg);
        try (Arena arena = Arena.ofShared()) {
            Map<String, Tensor> top = new LinkedHashMap<>();
            top.put("model.embed_tokens.weight", rand(arena, 0.02f, 11, vocab, h));
            top.put("lm_head.weight", rand(arena, 0.02f, 12, vocab, h));
            top.put("model.norm.weight", ones(arena, h));
            SafeTensorsWriter.write(dir.resolve("model-top.safetensors"), top, Map.of("format", "pt"));
        }
        for (int l = 0; l < layers; l++) {
            try (Arena arena = Arena.ofShared()) {
                String p = "model.layers." + l + ".";
                Map<String, Tensor> t = new LinkedHashMap<>();
                long seed = 100L * l;
                t.put(p + "input_layernorm.weight", ones(arena, h));
                t.put(p + "self_attn.q_proj.weight", rand(arena, 0.02f, seed + 1, (long) heads * hd, h));
                t.put(p + "self_attn.q_proj.bias", rand(arena, 0.02f, seed + 2, (long) heads * hd));
                t.put(p + "self_attn.k_proj.weight", rand(arena, 0.02f, seed + 3, (long) kv * hd, h));
                t.put(p + "self_attn.k_proj.bias", rand(arena, 0.02f, seed + 4, (long) kv * hd));
                t.put(p + "self_attn.v_proj.weight", rand(arena, 0.02f, seed + 5, (long) kv * hd, h));
                t.put(p + "self_attn.v_proj.bias", rand(arena, 0.02f, seed + 6, (long) kv * hd));
                t.put(p + "self_attn.o_proj.weight", rand(arena, 0.02f, seed + 7, h, (long) heads * hd));
                t.put(p + "post_attention_layernorm.weight", ones(arena, h));
                t.put(p + "mlp.gate_proj.weight", rand(arena, 0.02f, seed + 8, m, h));
                t.put(p + "mlp.up_proj.weight", rand(arena, 0.02f, seed + 9, m, h));
                t.put(p + "mlp.down_proj.weight", rand(arena, 0.02f, seed + 10, h, m));
                SafeTensorsWriter.write(dir.resolve(String.format("model-layer%03d.safetensors", l)), t, Map.of("format", "pt"));
            }
        }
    }

    static Tensor ones(Arena a, long n) {
        MemorySegment s = a.allocate(n * 2, 64);
        for (long i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, (short) 0x3f80);
        return new Tensor(DType.BF16, new long[]{n}, s, Device.CPU);
    }

    static Tensor rand(Arena a, float std, long seed, long... shape) {
        long n = Tensor.numel(shape);
        MemorySegment s = a.allocate(n * 2, 64);
        float half = (float) (std * Math.sqrt(3));
        int chunks = 64;
        IntStream.range(0, chunks).parallel().forEach(c -> {
            SplittableRandom r = new SplittableRandom(seed * 1000 + c);
            long lo = n * c / chunks, hi = n * (c + 1) / chunks;
            for (long i = lo; i < hi; i++)
                s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, CudaBackend.toBf16((float) ((r.nextDouble() * 2 - 1) * half)));
        });
        return new Tensor(DType.BF16, shape, s, Device.CPU);
    }
}
