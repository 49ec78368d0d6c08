package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Runs {@code vlm4j tokenize} in-process on the fixture rows. */
class TokenizeCommandTest {
    private final ObjectMapper mapper = new ObjectMapper();

    @Test
    void tokenizesFixtureRowsKeepingFieldsAndOrder(@TempDir Path tmp) throws IOException {
        List<JsonNode> expected = new ArrayList<>();
        StringBuilder in = new StringBuilder();
        int i = 0;
        for (String line : Files.readAllLines(Fixtures.dir().resolve("tokenizer_cases.jsonl"))) {
            if (line.isBlank()) continue;
            JsonNode row = mapper.readTree(line);
            expected.add(row);
            ObjectNode input = mapper.createObjectNode();
            input.put("id", "row" + i++);
            input.set("text", row.get("text"));
            input.put("extra", true);
            in.append(mapper.writeValueAsString(input)).append('\n');
        }
        in.append('\n');  // a trailing blank line is skipped
        Path inFile = Files.writeString(tmp.resolve("in.jsonl"), in);
        Path outFile = tmp.resolve("sub/out.jsonl");

        Captured run = run("tokenize", "--model", Fixtures.tinyModel().toString(),
                "--jsonl", inFile.toString(), "--out", outFile.toString());
        assertEquals(0, run.exitCode, run.err);
        assertEquals("", run.out, "stdout must stay clean");

        List<String> lines = Files.readAllLines(outFile);
        assertEquals(expected.size(), lines.size());
        for (int k = 0; k < lines.size(); k++) {
            JsonNode got = mapper.readTree(lines.get(k));
            JsonNode want = expected.get(k);
            String where = "output line " + (k + 1) + ", text " + want.get("text");
            List<String> fields = new ArrayList<>();
            for (Iterator<String> it = got.fieldNames(); it.hasNext(); ) fields.add(it.next());
            assertEquals(List.of("id", "text", "extra", "ids", "decoded"), fields, where);
            assertEquals("row" + k, got.get("id").asText(), where);
            assertEquals(want.get("text"), got.get("text"), where);
            assertEquals(want.get("ids"), got.get("ids"), where);
            assertEquals(want.get("decoded"), got.get("decoded"), where);
        }
    }

    @Test
    void badRowNamesFileAndLine(@TempDir Path tmp) throws IOException {
        Path inFile = Files.writeString(tmp.resolve("bad.jsonl"), "{\"text\": \"ok\"}\n\n{\"txt\": \"typo\"}\n");
        Path outFile = tmp.resolve("out.jsonl");
        Captured run = run("tokenize", "--model", Fixtures.tinyModel().toString(),
                "--jsonl", inFile.toString(), "--out", outFile.toString());
        assertNotEquals(0, run.exitCode);
        assertTrue(run.err.contains(inFile + ":3:"), run.err);
        assertTrue(run.err.contains("\"text\""), run.err);
        assertEquals(1, run.err.strip().lines().count(), "one-line error expected: " + run.err);
        assertFalse(Files.exists(outFile), "no partial output on error");
    }

    @Test
    void invalidJsonNamesFileAndLine(@TempDir Path tmp) throws IOException {
        Path inFile = Files.writeString(tmp.resolve("bad.jsonl"), "{\"text\": \"unterminated\n");
        Captured run = run("tokenize", "--model", Fixtures.tinyModel().toString(),
                "--jsonl", inFile.toString(), "--out", tmp.resolve("out.jsonl").toString());
        assertNotEquals(0, run.exitCode);
        assertTrue(run.err.contains(inFile + ":1: not valid JSON"), run.err);
    }

    @Test
    void missingTokenizerIsOneLineError(@TempDir Path tmp) throws IOException {
        Path inFile = Files.writeString(tmp.resolve("in.jsonl"), "{\"text\": \"hi\"}\n");
        Captured run = run("tokenize", "--model", tmp.toString(),
                "--jsonl", inFile.toString(), "--out", tmp.resolve("out.jsonl").toString());
        assertNotEquals(0, run.exitCode);
        assertTrue(run.err.contains(tmp.resolve("tokenizer.json").toString()), run.err);
        assertEquals(1, run.err.strip().lines().count(), "one-line error expected: " + run.err);
    }

    private record Captured(int exitCode, String out, String err) {}

    private static Captured run(String... args) {
        PrintStream oldOut = System.out;
        PrintStream oldErr = System.err;
        ByteArrayOutputStream out = new ByteArrayOutputStream();
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(out, true, StandardCharsets.UTF_8));
            System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
            int code = Main.run(args);
            return new Captured(code, out.toString(StandardCharsets.UTF_8), err.toString(StandardCharsets.UTF_8));
        } finally {
            System.setOut(oldOut);
            System.setErr(oldErr);
        }
    }
}
