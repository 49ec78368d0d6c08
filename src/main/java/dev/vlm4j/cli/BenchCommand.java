package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.compute.Backends;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.compute.cpu.MachineLimits;
import dev.vlm4j.compute.cpu.Parallel;
import dev.vlm4j.model.ModelConfig;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.tensor.Tensor;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.SplittableRandom;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j bench}: in one process, measures the machine (read bandwidth, peak FMA throughput), then a model's
 * decode and prefill speed, vision encode time and resident memory, and relates them: decode against bandwidth
 * (weight bytes streamed per token), prefill against peak FLOP/s.
 */
@Command(name = "bench", mixinStandardHelpOptions = true,
        description = "Measure decode/prefill/vision speed of a model against this machine's bandwidth and FMA peak.")
public final class BenchCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "Model folder.")
    Path model;

    @Option(names = "--quant", defaultValue = "bf16", description = "bf16 (as stored) | q8_0 | q4_0 (default ${DEFAULT-VALUE}).")
    String quant;

    @Option(names = "--threads", defaultValue = "0", description = "Worker threads (0: all processors).")
    int threads;

    @Option(names = "--json", description = "Print one JSON object instead of text.")
    boolean json;

    @Option(names = "--decode-tokens", defaultValue = "24", description = "Timed decode steps (default ${DEFAULT-VALUE}).")
    int decodeTokens;

    @Option(names = "--prefill-tokens", defaultValue = "1024", description = "Prompt length for prefill; 0 skips (default ${DEFAULT-VALUE}).")
    int prefillTokens;

    @Option(names = "--images", split = ",", defaultValue = "448x448",
            description = "Image sizes WxH for vision encode timing, comma separated; 'none' skips (default ${DEFAULT-VALUE}).")
    List<String> images;

    @Option(names = "--decode-depth", defaultValue = "16",
            description = "Tokens in the cache before the timed decode steps (prefilled first; default ${DEFAULT-VALUE}).")
    int decodeDepth;

    @Option(names = "--warmup-tokens", defaultValue = "10",
            description = "Untimed decode steps before the timed ones, while the JIT compiles the decode path (their "
                    + "times are reported apart, as is the JIT's compile time from the first timed step to the last, bandwidth "
                    + "rounds between them included; default ${DEFAULT-VALUE}).")
    int warmupTokens;

    @Option(names = "--bandwidth-mb", defaultValue = "2048", description = "Buffer size of the bandwidth test, held during the decode steps too while they are paired with bandwidth rounds (default ${DEFAULT-VALUE}).")
    int bandwidthMb;

    @Option(names = "--paired-bandwidth", negatable = true, defaultValue = "true", fallbackValue = "true",
            description = "Run a bandwidth round before the first and after every decode step, and compare each step with the "
                    + "rounds beside it (the bandwidth of the same seconds); --no-paired-bandwidth: the efficiency is the "
                    + "median step against the best round of the run (default on).")
    boolean pairedBandwidth;

    private final ObjectNode out = new ObjectMapper().createObjectNode();

    @Override
    public Integer call() throws Exception {
        // before the machine probes (seconds of work), so that a wrong path fails at once
        if (!java.nio.file.Files.isRegularFile(model.resolve("config.json")))
            throw new IllegalArgumentException(model + ": no config.json (is this a model folder?)");
        if (warmupTokens < 0) throw new IllegalArgumentException("--warmup-tokens must not be negative, not " + warmupTokens);
        if (threads > 0) Parallel.setThreads(threads);
        out.put("model", model.toString());
        out.put("quant", quant);
        out.put("threads", Parallel.threads());
        out.put("processors", Runtime.getRuntime().availableProcessors());
        out.put("cpu", cpuModel());
        out.put("vectorized", CpuBackend.vectorized());
        out.put("vector_bits", MachineLimits.vectorBits());
        out.put("native_kernels", dev.vlm4j.compute.cpu.NativeKernels.status());
        out.put("peak_probe", MachineLimits.nativePeak() ? "native AVX-512 FMA loop" : "Vector API FMA loop");
        say("machine: %s, %d threads, %d-bit vectors; native decode kernels %s", out.get("cpu").asText(), Parallel.threads(),
                MachineLimits.vectorBits(), dev.vlm4j.compute.cpu.NativeKernels.status());

        double peak = MachineLimits.peakFlops(50_000_000, 5);
        double bw = MachineLimits.readBandwidth((long) bandwidthMb << 20, 6);
        out.put("bandwidth_gbs", bw / 1e9);
        out.put("peak_gflops", peak / 1e9);
        say("read bandwidth %.2f GB/s, peak FMA %.1f GFLOP/s", bw / 1e9, peak / 1e9);

        System.gc();
        out.put("rss_before_load_gb", rssGb("VmRSS"));
        long t0 = System.nanoTime();
        try (Qwen25VLModel m = Qwen25VLModel.load(model, Backends.create("cpu", quant, threads))) {
            out.put("load_s", secs(t0));
            out.put("rss_after_load_gb", rssGb("VmRSS"));
            say("loaded in %.1f s, resident %.2f GB (%.2f GB before loading)", out.get("load_s").asDouble(),
                    out.get("rss_after_load_gb").asDouble(), out.get("rss_before_load_gb").asDouble());
            ModelConfig.TextConfig tc = m.config().text();
            SplittableRandom rnd = new SplittableRandom(1);

            // decode at batch 1 after a short prompt
            long wbytes = m.languageModel().decodeWeightBytes();
            out.put("decode_weight_bytes_per_token", wbytes);
            if (decodeTokens > 0) {
                if (decodeDepth < 1) throw new IllegalArgumentException("--decode-depth must be at least 1, not " + decodeDepth);
                out.put("decode_depth", decodeDepth);
                Qwen25VLModel.Sequence seq = m.newSequence(decodeDepth + 8 + warmupTokens + decodeTokens);
                int[] prompt = randomIds(rnd, decodeDepth);
                float[] logits = m.lastLogits(m.prefill(seq, prompt, null, null, null));
                var warmSteps = out.putArray("decode_warmup_ms_per_step");
                for (int i = 0; i < warmupTokens; i++) {
                    long w0 = System.nanoTime();
                    logits = m.lastLogits(m.extend(seq, new int[]{argmax(logits)}));
                    warmSteps.add(Math.round(secs(w0) * 1e4) / 10.0);
                }
                if (warmupTokens > 0) say("decode warm-up, %d untimed steps (ms): %s", warmupTokens, warmSteps);
                double[] per = new double[decodeTokens];
                double[] slot = new double[pairedBandwidth ? decodeTokens + 1 : 0];
                MachineLimits.BandwidthProbe probe = pairedBandwidth ? new MachineLimits.BandwidthProbe((long) bandwidthMb << 20) : null;
                double s = 0;
                var jit = java.lang.management.ManagementFactory.getCompilationMXBean();
                long jit0 = jit != null && jit.isCompilationTimeMonitoringSupported() ? jit.getTotalCompilationTime() : -1;
                try {
                    if (probe != null) slot[0] = probe.round();
                    for (int i = 0; i < decodeTokens; i++) {
                        long s0 = System.nanoTime();
                        logits = m.lastLogits(m.extend(seq, new int[]{argmax(logits)}));
                        per[i] = secs(s0);
                        s += per[i];
                        if (probe != null) slot[i + 1] = probe.round();
                    }
                } finally {
                    if (probe != null) probe.close();
                }
                if (jit0 >= 0) out.put("decode_jit_compile_ms", jit.getTotalCompilationTime() - jit0);
                double tps = decodeTokens / s;
                double[] sorted = per.clone();
                java.util.Arrays.sort(sorted);
                double median = sorted[decodeTokens / 2], tpsMedian = 1 / median;
                out.put("decode_tokens_per_s_mean", tps);
                out.put("decode_tokens_per_s", tpsMedian);
                out.put("decode_ms_per_token_median", 1000 * median);
                out.put("decode_ms_per_token_min", 1000 * sorted[0]);
                var steps = out.putArray("decode_ms_per_step");
                for (double d : per) steps.add(Math.round(d * 1e4) / 10.0);
                say("decode: %.3f tokens/s over all %d steps (%.1f ms/token), median step %.1f ms (%.3f tokens/s), fastest %.1f ms",
                        tps, decodeTokens, 1000 * s / decodeTokens, 1000 * median, tpsMedian, 1000 * sorted[0]);
                say("  steps (ms): %s", out.get("decode_ms_per_step").toString());
                if (jit0 >= 0) say("  JIT compile time from the first timed step to the last (rounds between them included): %d ms", out.get("decode_jit_compile_ms").asLong());
                if (probe != null) {
                    // each step against the better of the rounds just before and just after it
                    double[] eff = new double[decodeTokens];
                    var gbs = out.putArray("decode_paired_bandwidth_gbs");
                    var effs = out.putArray("decode_bandwidth_efficiency_per_step");
                    for (double b : slot) {
                        gbs.add(b / 1e9);
                        bw = Math.max(bw, b);   // the unpaired efficiency uses the best round of the whole run
                    }
                    for (int i = 0; i < decodeTokens; i++) {
                        eff[i] = wbytes / per[i] / Math.max(slot[i], slot[i + 1]);
                        effs.add(eff[i]);
                    }
                    java.util.Arrays.sort(eff);
                    out.put("decode_bandwidth_efficiency_paired", eff[decodeTokens / 2]);
                    StringBuilder sb = new StringBuilder();
                    for (double b : slot) sb.append(sb.isEmpty() ? "" : ", ").append(String.format("%.1f", b / 1e9));
                    say("  bandwidth rounds before, between and after the steps (GB/s): [%s]", sb);
                    say("  paired: each step's weight GB/s over the better round beside it, median %.3f (range %.3f-%.3f)",
                            eff[decodeTokens / 2], eff[0], eff[decodeTokens - 1]);
                }
                say("  %.2f GB weights/token -> %.1f GB/s at the median step = %.3f of the best bandwidth so far", wbytes / 1e9,
                        wbytes * tpsMedian / 1e9, wbytes * tpsMedian / bw);
            }

            if (prefillTokens > 0) {
                int n = prefillTokens;
                Qwen25VLModel.Sequence seq = m.newSequence(n + 8);
                int[] ids = randomIds(rnd, n);
                Qwen25VLModel.Sequence warm = m.newSequence(64); // JIT warm-up of the GEMM / attention paths
                m.lastLogits(m.prefill(warm, randomIds(rnd, 24), null, null, null));
                // the FMA capacity of this machine drifts (shared cores): measure it right before and after as well
                double peakBefore = MachineLimits.peakFlops(50_000_000, 3);
                long p0 = System.nanoTime();
                m.lastLogits(m.prefill(seq, ids, null, null, null));
                double s = secs(p0);
                double peakAfter = MachineLimits.peakFlops(50_000_000, 3);
                out.put("peak_gflops_before_prefill", peakBefore / 1e9);
                out.put("peak_gflops_after_prefill", peakAfter / 1e9);
                peak = Math.max(peak, Math.max(peakBefore, peakAfter));
                double flops = 2.0 * n * m.languageModel().layerLinearParams()
                        + 4.0 * tc.numHeads() * tc.headDim() * ((double) n * (n + 1) / 2) * tc.numLayers()
                        + 2.0 * tc.vocabSize() * tc.hiddenSize();
                out.put("prefill_tokens", n);
                out.put("prefill_s", s);
                out.put("prefill_tokens_per_s", n / s);
                out.put("prefill_gflops", flops / s / 1e9);
                out.put("prefill_flops_efficiency", flops / s / peak);
                say("prefill %d tokens: %.1f s, %.1f tokens/s, %.1f GFLOP/s = %.3f of peak", n, s, n / s, flops / s / 1e9, flops / s / peak);
            }

            if (m.visionTower() != null && !(images.size() == 1 && images.get(0).equals("none"))) {
                ObjectNode vis = out.putObject("vision_encode_s");
                var vc = m.config().vision();
                int f = vc.patchSize() * vc.spatialMergeSize();
                for (String size : images) {
                    String[] wh = size.toLowerCase().split("x");
                    int w = Math.max(f, Math.round(Integer.parseInt(wh[0]) / (float) f) * f);
                    int h = Math.max(f, Math.round(Integer.parseInt(wh[1]) / (float) f) * f);
                    int gh = h / vc.patchSize(), gw = w / vc.patchSize(), patches = gh * gw;
                    float[] pv = new float[patches * vc.patchDim()];
                    for (int i = 0; i < pv.length; i++) pv[i] = (float) rnd.nextGaussian();
                    Tensor px = m.backend().fromHost(pv, patches, vc.patchDim());
                    long v0 = System.nanoTime();
                    m.visionTower().encode(px, List.of(new int[]{1, gh, gw}), null);
                    double s = secs(v0);
                    vis.put(size, s);
                    say("vision encode %s (%dx%d resized, %d patches, %d tokens): %.2f s", size, w, h, patches, patches / 4, s);
                }
            }
            out.put("rss_model_gb", rssGb("VmRSS"));
            out.put("peak_rss_model_gb", rssGb("VmHWM"));
            say("resident memory with the model loaded and run: %.2f GB now, %.2f GB peak", out.get("rss_model_gb").asDouble(),
                    out.get("peak_rss_model_gb").asDouble());
            limitsAgain(bw, peak);
            out.put("rss_end_gb", rssGb("VmRSS"));
            out.put("peak_rss_end_gb", rssGb("VmHWM"));
            say("resident memory at the end %.2f GB, peak %.2f GB (the peak includes the bandwidth buffers)",
                    out.get("rss_end_gb").asDouble(), out.get("peak_rss_end_gb").asDouble());
        }
        if (json) System.out.println(new ObjectMapper().writerWithDefaultPrettyPrinter().writeValueAsString(out));
        return 0;
    }

    /** Limits again at the end: other load on the machine varies, so efficiencies use the better of both. */
    private void limitsAgain(double bw, double peak) {
        double peak2 = MachineLimits.peakFlops(50_000_000, 5), bw2 = MachineLimits.readBandwidth((long) bandwidthMb << 20, 6);
        out.put("bandwidth_gbs_end", bw2 / 1e9);
        out.put("peak_gflops_end", peak2 / 1e9);
        say("limits again: read bandwidth %.2f GB/s, peak FMA %.1f GFLOP/s", bw2 / 1e9, peak2 / 1e9);
        double bwMax = Math.max(bw, bw2), peakMax = Math.max(peak, peak2);
        if (out.has("decode_tokens_per_s")) {
            // unpaired: the median step against the best bandwidth round of the whole run (start, between the steps, end)
            double u = wbytesOut() * out.get("decode_tokens_per_s").asDouble() / bwMax;
            out.put("decode_bandwidth_efficiency_unpaired", u);
            // the fastest step against the same best round: what the kernels reach in the machine's best minute
            // (informative only)
            double ef = wbytesOut() / (out.get("decode_ms_per_token_min").asDouble() / 1000) / bwMax;
            out.put("decode_bandwidth_efficiency_fastest_step", ef);
            boolean paired = out.has("decode_bandwidth_efficiency_paired");
            double e = paired ? out.get("decode_bandwidth_efficiency_paired").asDouble() : u;
            out.put("decode_bandwidth_efficiency", e);
            say("decode_bandwidth_efficiency = %.3f (%s); unpaired %.3f (median step against the best round of the run, "
                    + "%.2f GB/s); fastest step %.3f", e, paired ? "median of the steps against the rounds beside them" : "unpaired",
                    u, bwMax / 1e9, ef);
        }
        if (out.has("prefill_gflops")) {
            double e = out.get("prefill_gflops").asDouble() * 1e9 / peakMax;
            out.put("prefill_flops_efficiency", e);
            say("prefill_flops_efficiency = %.3f (against the better peak, %.1f GFLOP/s)", e, peakMax / 1e9);
        }
    }

    private long wbytesOut() { return out.get("decode_weight_bytes_per_token").asLong(); }

    private void say(String fmt, Object... args) {
        if (!json) System.out.println(String.format(fmt, args));
        else System.err.println(String.format(fmt, args));
    }

    private static double secs(long t0) { return (System.nanoTime() - t0) / 1e9; }

    /** Ordinary text token ids (clear of the special tokens at 151643+). */
    private static int[] randomIds(SplittableRandom r, int n) {
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = 1000 + r.nextInt(100_000);
        return ids;
    }

    private static int argmax(float[] a) {
        int k = 0;
        for (int i = 1; i < a.length; i++) if (a[i] > a[k]) k = i;
        return k;
    }

    static double rssGb(String key) {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/self/status")))
                if (line.startsWith(key + ":")) return Long.parseLong(line.replaceAll("[^0-9]", "")) * 1024 / 1e9;
        } catch (Exception ignored) { }
        return -1;
    }

    static String cpuModel() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo")))
                if (line.startsWith("model name")) return line.substring(line.indexOf(':') + 1).trim();
        } catch (Exception ignored) { }
        return System.getProperty("os.arch");
    }
}
