package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code vlm4j bench} end to end on a tiny random checkpoint: one JSON object with the machine's limits, every decode
 * step, the efficiencies derived from them and the vision encode time. Checks the report's shape and its arithmetic,
 * not speed (timings are the benchmark's job, never a unit test's).
 */
class BenchCommandTest {
    private static JsonNode bench(Path dir, String... extra) throws Exception {
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int rc;
        try {
            System.setOut(new PrintStream(buf, true));
            String[] args = {"bench", "--model", dir.toString(), "--quant", "q8_0", "--decode-tokens", "5", "--decode-depth", "40",
                    "--prefill-tokens", "20", "--images", "56x56", "--bandwidth-mb", "64", "--json"};
            String[] all = java.util.Arrays.copyOf(args, args.length + extra.length);
            System.arraycopy(extra, 0, all, args.length, extra.length);
            rc = Main.run(all);
        } finally {
            System.setOut(old);
        }
        assertEquals(0, rc);
        return new ObjectMapper().readTree(buf.toString());
    }

    private static double[] values(JsonNode array) {
        double[] v = new double[array.size()];
        for (int i = 0; i < v.length; i++) v[i] = array.get(i).asDouble();
        return v;
    }

    @Test
    void reportsStepsLimitsAndEfficiencies(@TempDir Path dir) throws Exception {
        assertEquals(0, Main.run("init", "--preset", "tiny", "--out", dir.toString(), "--seed", "5"));
        JsonNode j = bench(dir);
        assertEquals("q8_0", j.get("quant").asText());
        assertEquals(40, j.get("decode_depth").asInt());
        assertTrue(j.get("bandwidth_gbs").asDouble() > 0 && j.get("peak_gflops").asDouble() > 0, j.toString());
        double[] steps = values(j.get("decode_ms_per_step"));
        assertEquals(5, steps.length, "one entry per timed decode step");
        double[] warm = values(j.get("decode_warmup_ms_per_step"));
        assertEquals(10, warm.length, "the default warm-up: 10 untimed steps, listed apart");
        for (double w : warm) assertTrue(w > 0, "warm-up step " + w);
        assertTrue(j.get("decode_jit_compile_ms").asLong() >= 0, j.toString());
        double min = Double.MAX_VALUE;
        for (double s : steps) {
            assertTrue(s > 0, "step " + s);
            min = Math.min(min, s);
        }
        assertEquals(min, j.get("decode_ms_per_token_min").asDouble(), 0.11, "the fastest step is the smallest listed (0.1 ms rounding)");
        long wbytes = j.get("decode_weight_bytes_per_token").asLong();

        // paired (the default): a bandwidth round before the first step and after each; every step over the better
        // round beside it; the efficiency is the median of those
        double[] rounds = values(j.get("decode_paired_bandwidth_gbs")), per = values(j.get("decode_bandwidth_efficiency_per_step"));
        assertEquals(6, rounds.length, "a round before the first step and one after every step");
        assertEquals(5, per.length);
        for (int i = 0; i < 5; i++) {
            assertTrue(rounds[i] > 0, "round " + i);
            double want = wbytes / (steps[i] / 1000) / (Math.max(rounds[i], rounds[i + 1]) * 1e9);
            assertEquals(want, per[i], want * 0.051 / steps[i] + 1e-12, "step " + i + " (" + steps[i] + " ms, listed to 0.1 ms)");
        }
        double[] sorted = per.clone();
        java.util.Arrays.sort(sorted);
        assertEquals(sorted[2], j.get("decode_bandwidth_efficiency").asDouble(), 0, "the median step's paired efficiency");
        assertEquals(sorted[2], j.get("decode_bandwidth_efficiency_paired").asDouble(), 0);

        // unpaired: the median step against the best round of the whole run (start, between the steps, end)
        double best = Math.max(j.get("bandwidth_gbs").asDouble(), j.get("bandwidth_gbs_end").asDouble());
        for (double r : rounds) best = Math.max(best, r);
        double unpaired = wbytes * j.get("decode_tokens_per_s").asDouble() / (best * 1e9);
        assertEquals(unpaired, j.get("decode_bandwidth_efficiency_unpaired").asDouble(), 1e-9 * Math.max(1, unpaired));
        assertTrue(j.get("decode_bandwidth_efficiency_fastest_step").asDouble() >= unpaired * 0.999,
                "the fastest step is at least as fast as the median one");
        assertEquals(20, j.get("prefill_tokens").asInt());
        assertTrue(j.get("prefill_flops_efficiency").asDouble() > 0);
        assertTrue(j.get("vision_encode_s").get("56x56").asDouble() > 0, "vision encode time of the asked size");
        assertTrue(j.get("rss_model_gb").asDouble() > 0);
    }

    @Test
    void withoutPairedRoundsTheEfficiencyIsTheMedianStepAgainstTheBestReading(@TempDir Path dir) throws Exception {
        assertEquals(0, Main.run("init", "--preset", "tiny", "--out", dir.toString(), "--seed", "6"));
        JsonNode j = bench(dir, "--no-paired-bandwidth", "--warmup-tokens", "3");
        assertEquals(3, j.get("decode_warmup_ms_per_step").size(), "--warmup-tokens 3");
        assertEquals(5, j.get("decode_ms_per_step").size());
        assertFalse(j.has("decode_paired_bandwidth_gbs") || j.has("decode_bandwidth_efficiency_paired"), j.toString());
        double bw = Math.max(j.get("bandwidth_gbs").asDouble(), j.get("bandwidth_gbs_end").asDouble()) * 1e9;
        double want = j.get("decode_weight_bytes_per_token").asLong() * j.get("decode_tokens_per_s").asDouble() / bw;
        assertEquals(want, j.get("decode_bandwidth_efficiency").asDouble(), 1e-9 * Math.max(1, want));
        assertEquals(want, j.get("decode_bandwidth_efficiency_unpaired").asDouble(), 1e-9 * Math.max(1, want));
    }

    @Test
    void aNegativeWarmUpIsRefused(@TempDir Path dir) {
        assertEquals(0, Main.run("init", "--preset", "tiny", "--out", dir.toString(), "--seed", "7"));
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream old = System.err;
        int rc;
        try {
            System.setErr(new PrintStream(err, true));
            rc = Main.run("bench", "--model", dir.toString(), "--warmup-tokens", "-1", "--prefill-tokens", "0",
                    "--images", "none", "--bandwidth-mb", "64", "--json");
        } finally {
            System.setErr(old);
        }
        assertNotEquals(0, rc);
        assertTrue(err.toString().contains("--warmup-tokens must not be negative"), err.toString());
        assertFalse(err.toString().contains("read bandwidth"), "refused before the machine probes: " + err);
    }

    @Test
    void aMissingModelFailsBeforeTheProbesWithItsPath(@TempDir Path dir) {
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        PrintStream old = System.err;
        int rc;
        try {
            System.setErr(new PrintStream(err, true));
            rc = Main.run("bench", "--model", dir.resolve("nope").toString(), "--json");
        } finally {
            System.setErr(old);
        }
        assertNotEquals(0, rc);
        assertTrue(err.toString().contains("nope: no config.json"), err.toString());
        assertFalse(err.toString().contains("read bandwidth"), "no machine probe ran: " + err);
    }
}
