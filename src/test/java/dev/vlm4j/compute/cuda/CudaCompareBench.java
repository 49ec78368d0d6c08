package dev.vlm4j.compute.cuda;

import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.tensor.Tensor;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.SplittableRandom;

/**
 * The vlm4j side of {@code scripts/gpu-compare.sh}: the same measures as {@code scripts/gpu_compare_hf.py} on a
 * full Qwen2.5-VL checkpoint (vision tower and decoder), with {@link CudaBackend} in bf16.
 * <pre>java ... dev.vlm4j.compute.cuda.CudaCompareBench DIR OUT.json [--batches 1,16,64] [--before]</pre>
 * <ul>
 * <li>decode_bB: B sequences of 128 random prompt tokens, each prefilled on its own; the first new token comes from
 * the prefill logits, then 2 untimed warm-up steps and 127 timed {@link Qwen25VLModel#decodeBatchGreedy} steps
 * (greedy, no early stop); tok/s = B * 127 / time.</li>
 * <li>vision_ms: {@code visionTower().encode} of random pixel values of a 1036x1036 image (grid 1x74x74) already on
 * the device; mean of 3 after 2 warm-ups.</li>
 * <li>prefill_ms: prefill of 16 text tokens, the image (1369 placeholders between vision start/end) and 16 text tokens,
 * vision tower included, plus the last position's logits on the host; mean of 3 after a warm-up.</li>
 * </ul>
 * {@code --before} also times the paths these kernels replaced (per-sequence attention loop, one-query-per-block
 * attention) in the same process, as "extra:" entries.
 */
public final class CudaCompareBench {
    static final int PROMPT = 128, NEW = 128, WARM = 2;
    static final int[] GRID = {1, 74, 74};

    public static void main(String[] args) throws Exception {
        Path dir = Path.of(args[0]), out = Path.of(args[1]);
        int[] batches = {1, 16, 64};
        boolean before = false, decodeOnly = false;
        for (int i = 2; i < args.length; i++) {
            switch (args[i]) {
                case "--batches" -> batches = java.util.Arrays.stream(args[++i].split(",")).mapToInt(Integer::parseInt).toArray();
                case "--before" -> before = true;
                case "--decode-only" -> decodeOnly = true;
                case "--vision-only" -> batches = new int[0];
                default -> throw new IllegalArgumentException(args[i]);
            }
        }
        Map<String, Object> res = new LinkedHashMap<>();
        long t0 = System.nanoTime();
        CudaBackend be = CudaBackend.create(0, Precision.BF16);
        try (Qwen25VLModel model = Qwen25VLModel.load(dir, be)) {
            be.synchronize();
            res.put("side", "vlm4j");
            res.put("device", be.deviceName());
            res.put("load_s", (System.nanoTime() - t0) / 1e9);
            System.out.printf(Locale.ROOT, "vlm4j: loaded %s in %.1f s on %s%n", dir, (System.nanoTime() - t0) / 1e9, be.deviceName());

            if (!decodeOnly) visionAndPrefill(model, be, res, before);
            decode(model, be, res, batches, before);
        }
        Files.writeString(out, json(res));
        System.out.println("wrote " + out);
    }

    static void visionAndPrefill(Qwen25VLModel model, CudaBackend be, Map<String, Object> res, boolean before) {
        {
            // vision encode
            int patches = GRID[0] * GRID[1] * GRID[2], patchDim = model.config().vision().patchDim();
            float[] pv = new float[patches * patchDim];
            SplittableRandom r = new SplittableRandom(3);
            for (int i = 0; i < pv.length; i++) pv[i] = (float) r.nextGaussian();
            Tensor px = be.fromHost(pv, patches, patchDim);
            List<int[]> grids = List.of(GRID);
            double vis = timeVision(model, be, px, grids, 2, 3);
            res.put("vision_ms", vis);
            System.out.printf(Locale.ROOT, "vlm4j vision encode 1036x1036: %.1f ms%n", vis);
            if (before) {
                be.useGemmAttention(false);
                double vf = timeVision(model, be, px, grids, 1, 3);
                be.useGemmAttention(true);
                res.put("extra:vision encode ms, full-attention blocks on the float32 flash kernel (before)", vf);
                System.out.printf(Locale.ROOT, "vlm4j vision encode, full attention on the flash kernel: %.1f ms%n", vf);
                be.useFlashAttention(false);
                be.useGemmAttention(false);
                double v0 = timeVision(model, be, px, grids, 1, 2);
                be.useGemmAttention(true);
                be.useFlashAttention(true);
                res.put("extra:vision encode ms, one-query-per-block attention (before)", v0);
                System.out.printf(Locale.ROOT, "vlm4j vision encode, old attention kernel: %.1f ms%n", v0);
            }

            // prefill image + 32 text tokens
            int[] ids = promptIds(model);
            var vin = new Qwen25VLModel.VisionInput(px, grids, null, false);
            double pre = timePrefill(model, be, ids, vin, 1, 3);
            res.put("prefill_ms", pre);
            res.put("prefill_tokens", ids.length);
            System.out.printf(Locale.ROOT, "vlm4j prefill image + 32 text tokens (%d tokens): %.1f ms%n", ids.length, pre);
            if (before) {
                be.useFlashAttention(false);
                be.useGemmAttention(false);
                double p0 = timePrefill(model, be, ids, vin, 1, 2);
                be.useGemmAttention(true);
                be.useFlashAttention(true);
                res.put("extra:prefill ms, one-query-per-block attention (before)", p0);
                System.out.printf(Locale.ROOT, "vlm4j prefill, old attention kernel: %.1f ms%n", p0);
            }
        }
    }

    static void decode(Qwen25VLModel model, CudaBackend be, Map<String, Object> res, int[] batches, boolean before) {
        {

            // batched greedy decode
            for (int b : batches) {
                List<Qwen25VLModel.Sequence> seqs = new ArrayList<>();
                int[] next = new int[b];
                SplittableRandom rr = new SplittableRandom(100 + b);
                long pa = System.nanoTime();
                for (int i = 0; i < b; i++) {
                    var seq = model.newSequence(PROMPT + NEW + 64);
                    int[] p = new int[PROMPT];
                    for (int j = 0; j < PROMPT; j++) p[j] = rr.nextInt(150000);
                    next[i] = argmax(model.lastLogits(model.prefill(seq, p, null, null, null)));
                    seqs.add(seq);
                }
                double prefillS = (System.nanoTime() - pa) / 1e9;
                for (int w = 0; w < WARM; w++) next = model.decodeBatchGreedy(seqs, next);
                be.synchronize();
                long a = System.nanoTime();
                for (int s = 0; s < NEW - 1; s++) next = model.decodeBatchGreedy(seqs, next);
                double dt = (System.nanoTime() - a) / 1e9;
                double tps = b * (NEW - 1) / dt;
                Map<String, Object> m = new LinkedHashMap<>();
                m.put("tok_s", tps);
                m.put("ms_step", 1000 * dt / (NEW - 1));
                m.put("prefill_s", prefillS);
                res.put("decode_b" + b, m);
                System.out.printf(Locale.ROOT, "vlm4j decode batch %d: %.1f tok/s (%.2f ms/step); %d prefills %.1f s; device memory %.2f GiB (peak %.2f)%n",
                        b, tps, 1000 * dt / (NEW - 1), b, prefillS, be.deviceBytes()[0] / 1073741824.0, be.deviceBytes()[1] / 1073741824.0);
                // host time to queue one step (decoder + LM head) before the argmax waits for it
                long issue = 0;
                int probe = 16;
                for (int s = 0; s < probe; s++) {
                    long[][] pos = new long[3][b];
                    dev.vlm4j.model.KvCache[] caches = new dev.vlm4j.model.KvCache[b];
                    for (int i = 0; i < b; i++) {
                        caches[i] = seqs.get(i).cache;
                        pos[0][i] = pos[1][i] = pos[2][i] = caches[i].length() + seqs.get(i).ropeDelta;
                    }
                    var lm = model.languageModel();
                    long i0 = System.nanoTime();
                    Tensor lg = lm.logits(lm.forwardBatch(lm.embed(next), pos, caches));
                    issue += System.nanoTime() - i0;
                    next = be.argmaxRows(lg);
                }
                m.put("host_queue_ms_step", issue / 1e6 / probe);
                System.out.printf(Locale.ROOT, "  batch %d: host time to queue one step %.2f ms%n", b, issue / 1e6 / probe);
                if (before) {
                    be.useGraphs(false);
                    next = beforeDecode(model, be, seqs, next, res, 32, "eager launches without CUDA graphs");
                    be.useGraphs(true);
                }
                if (before && b > 1) {
                    be.useBatchedKernels(false);
                    next = beforeDecode(model, be, seqs, next, res, 8, "per-sequence attention loop");
                    be.useBatchedKernels(true);
                }
                seqs.clear();
                System.gc();
            }
        }
    }

    /** Times {@code steps} greedy steps after one warm-up (a replaced path switched on by the caller); returns the last tokens. */
    static int[] beforeDecode(Qwen25VLModel model, CudaBackend be, List<Qwen25VLModel.Sequence> seqs, int[] next,
                              Map<String, Object> res, int steps, String what) {
        int b = seqs.size();
        next = model.decodeBatchGreedy(seqs, next);
        be.synchronize();
        long c = System.nanoTime();
        for (int s = 0; s < steps; s++) next = model.decodeBatchGreedy(seqs, next);
        double d0 = (System.nanoTime() - c) / 1e9;
        res.put("extra:decode tok/s, batch " + b + ", " + what + " (before, " + steps + " steps)", b * steps / d0);
        System.out.printf(Locale.ROOT, "vlm4j decode batch %d, %s: %.1f tok/s (%.2f ms/step)%n", b, what, b * steps / d0,
                1000 * d0 / steps);
        return next;
    }

    static double timeVision(Qwen25VLModel model, CudaBackend be, Tensor px, List<int[]> grids, int warm, int reps) {
        for (int i = 0; i < warm; i++) model.visionTower().encode(px, grids, null);
        be.synchronize();
        long a = System.nanoTime();
        for (int i = 0; i < reps; i++) model.visionTower().encode(px, grids, null);
        be.synchronize();
        return (System.nanoTime() - a) / 1e6 / reps;
    }

    static double timePrefill(Qwen25VLModel model, CudaBackend be, int[] ids, Qwen25VLModel.VisionInput vin, int warm, int reps) {
        double total = 0;
        for (int i = 0; i < warm + reps; i++) {
            var seq = model.newSequence(ids.length + 8);
            be.synchronize();
            long a = System.nanoTime();
            model.lastLogits(model.prefill(seq, ids, vin, null, null));
            if (i >= warm) total += (System.nanoTime() - a) / 1e6;
        }
        return total / reps;
    }

    static int[] promptIds(Qwen25VLModel model) {
        int img = GRID[0] * GRID[1] * GRID[2] / 4;
        int[] ids = new int[16 + 1 + img + 1 + 16];
        int k = 0;
        for (int i = 0; i < 16; i++) ids[k++] = 1000 + i;
        ids[k++] = 151652;
        for (int i = 0; i < img; i++) ids[k++] = model.config().imageTokenId();
        ids[k++] = 151653;
        for (int i = 0; i < 16; i++) ids[k++] = 2000 + i;
        return ids;
    }

    static int argmax(float[] v) {
        int a = 0;
        for (int j = 1; j < v.length; j++) if (v[j] > v[a]) a = j;
        return a;
    }

    @SuppressWarnings("unchecked")
    static String json(Object o) {
        if (o instanceof Map<?, ?> m) {
            StringBuilder sb = new StringBuilder("{");
            for (var e : m.entrySet()) {
                if (sb.length() > 1) sb.append(",\n ");
                sb.append('"').append(e.getKey().toString().replace("\"", "'")).append("\": ").append(json(e.getValue()));
            }
            return sb.append('}').toString();
        }
        if (o instanceof String s) return '"' + s.replace("\"", "'") + '"';
        if (o instanceof Double d) return String.format(Locale.ROOT, "%.4f", d);
        return String.valueOf(o);
    }
}
