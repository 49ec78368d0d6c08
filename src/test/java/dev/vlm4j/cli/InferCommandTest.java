package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;

import static org.junit.jupiter.api.Assertions.*;

/** The infer command end to end, run as a separate process, as a user runs it. */
class InferCommandTest {
    private static String[] run(String... args) throws Exception {
        var pb = new ProcessBuilder();
        String javaBin = ProcessHandle.current().info().command().orElse("java");
        String cp = System.getProperty("java.class.path");
        var cmd = new java.util.ArrayList<String>(java.util.List.of(javaBin, "--add-modules", "jdk.incubator.vector",
                "--enable-native-access=ALL-UNNAMED", "-cp", cp, "dev.vlm4j.cli.Main"));
        cmd.addAll(java.util.List.of(args));
        Process p = pb.command(cmd).start();
        String out = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        String err = new String(p.getErrorStream().readAllBytes(), StandardCharsets.UTF_8);
        return new String[]{String.valueOf(p.waitFor()), out, err};
    }

    @Test
    void greedyJsonMatchesTheReferenceGenerationOfTextOnly() throws Exception {
        String model = Fixtures.tinyModel().toString();
        String[] r = run("infer", "--model", model, "--system", "You are MiMo.", "--prompt", "Hello, 世界! 12345 apples?",
                "--greedy", "--max-new-tokens", "16", "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode j = new ObjectMapper().readTree(r[1]);
        assertEquals(31, j.get("prompt_tokens").asInt());
        // text_only's reference greedy tokens (generated_ids), unless an EOS id came first
        long[] ref;
        try (var f = dev.vlm4j.tensor.safetensors.SafeTensorsFile.open(Fixtures.cases().resolve("text_only/tensors.safetensors"))) {
            ref = f.get("generated_ids").toLongArray();
        }
        JsonNode ids = j.get("token_ids");
        assertTrue(ids.size() >= 1);
        for (int i = 0; i < ids.size(); i++) assertEquals(ref[i], ids.get(i).asLong(), "token " + i);
        assertTrue(j.has("reasoning") && j.has("answer") && j.has("decode_tokens_per_s"));
    }

    @Test
    void streamsTextAndReportsCountsOnStderr() throws Exception {
        String[] r = run("infer", "--model", Fixtures.tinyModel().toString(), "--prompt", "Hello", "--max-new-tokens", "5", "--seed", "7");
        assertEquals("0", r[0], r[2]);
        assertFalse(r[1].isBlank(), "nothing streamed to stdout");
        assertTrue(r[2].contains("5 generated") || r[2].contains("generated, stop"), r[2]);
        String[] again = run("infer", "--model", Fixtures.tinyModel().toString(), "--prompt", "Hello", "--max-new-tokens", "5", "--seed", "7");
        assertEquals(r[1], again[1], "same seed, same output");
    }

    @Test
    void missingModelFolderIsAClearErrorWithExitCode2() throws Exception {
        String[] r = run("infer", "--model", "/nonexistent/model", "--prompt", "Hi");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("/nonexistent/model") && r[2].contains("not found"), r[2]);
        assertFalse(r[2].contains("\tat "), "no stack trace: " + r[2]);
    }

    @Test
    void badSamplingValueIsAClearError() throws Exception {
        String[] r = run("infer", "--model", Fixtures.tinyModel().toString(), "--prompt", "Hi", "--top-p", "0");
        assertEquals("2", r[0]);
        assertTrue(r[2].contains("top_p"), r[2]);
    }

}
