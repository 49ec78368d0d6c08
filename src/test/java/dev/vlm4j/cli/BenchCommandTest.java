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
    @Test
    void reportsStepsLimitsAndEfficiencies(@TempDir Path dir) throws Exception {
        assertEquals(0, Main.run("init", "--preset", "tiny", "--out", dir.toString(), "--seed", "5"));
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        PrintStream old = System.out;
        int rc;
        try {
            System.setOut(new PrintStream(buf, true));
            rc = Main.run("bench", "--model", dir.toString(), "--quant", "q8_0", "--decode-tokens", "5", "--decode-depth", "40", "--prefill-tokens", "20",
                    "--images", "56x56", "--bandwidth-mb", "64", "--json");
        } finally {
            System.setOut(old);
        }
        assertEquals(0, rc);
        JsonNode j = new ObjectMapper().readTree(buf.toString());
        assertEquals("q8_0", j.get("quant").asText());
        assertEquals(40, j.get("decode_depth").asInt());
        assertTrue(j.get("bandwidth_gbs").asDouble() > 0 && j.get("peak_gflops").asDouble() > 0, j.toString());
        JsonNode steps = j.get("decode_ms_per_step");
        assertEquals(5, steps.size(), "one entry per timed decode step");
        double min = Double.MAX_VALUE;
        for (JsonNode s : steps) {
            assertTrue(s.asDouble() > 0, "step " + s);
            min = Math.min(min, s.asDouble());
        }
        assertEquals(min, j.get("decode_ms_per_token_min").asDouble(), 0.11, "the fastest step is the smallest listed (0.1 ms rounding)");
        // the efficiency is bytes x median tokens/s over the better of the two bandwidth readings
        double bw = Math.max(j.get("bandwidth_gbs").asDouble(), j.get("bandwidth_gbs_end").asDouble()) * 1e9;
        double want = j.get("decode_weight_bytes_per_token").asLong() * j.get("decode_tokens_per_s").asDouble() / bw;
        assertEquals(want, j.get("decode_bandwidth_efficiency").asDouble(), 1e-9 * Math.max(1, want));
        assertTrue(j.get("decode_bandwidth_efficiency_fastest_step").asDouble() >= j.get("decode_bandwidth_efficiency").asDouble() * 0.999,
                "the fastest step is at least as fast as the median one");
        assertEquals(20, j.get("prefill_tokens").asInt());
        assertTrue(j.get("prefill_flops_efficiency").asDouble() > 0);
        assertTrue(j.get("vision_encode_s").get("56x56").asDouble() > 0, "vision encode time of the asked size");
        assertTrue(j.get("rss_model_gb").asDouble() > 0);
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
