package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Iterator;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Drives {@code vlm4j template} in-process over the fixture rows. */
class TemplateCommandTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static List<String> rows(String template) throws Exception {
        List<String> out = new ArrayList<>();
        for (String line : Files.readAllLines(Fixtures.dir().resolve("chat_template_cases.jsonl"))) {
            if (!line.isBlank() && JSON.readTree(line).get("template").asText().equals(template)) out.add(line);
        }
        return out;
    }

    /** Runs the command on the rows and checks every output row against its input row. */
    private static void runAndCompare(List<String> rows, Path dir, String... extraArgs) throws Exception {
        Path in = dir.resolve("in.jsonl"), out = dir.resolve("out.jsonl");
        Files.write(in, rows);
        List<String> args = new ArrayList<>(List.of("template", "--jsonl", in.toString(), "--out", out.toString()));
        args.addAll(List.of(extraArgs));
        assertEquals(0, Main.run(args.toArray(String[]::new)));
        List<String> got = Files.readAllLines(out);
        assertEquals(rows.size(), got.size());
        for (int i = 0; i < rows.size(); i++) {
            JsonNode expected = JSON.readTree(rows.get(i)), actual = JSON.readTree(got.get(i));
            List<String> expectedFields = new ArrayList<>(), actualFields = new ArrayList<>();
            for (Iterator<String> it = expected.fieldNames(); it.hasNext(); ) expectedFields.add(it.next());
            for (Iterator<String> it = actual.fieldNames(); it.hasNext(); ) actualFields.add(it.next());
            assertEquals(expectedFields, actualFields, "fields and their order, row " + i);
            assertEquals(expected.get("inputs"), actual.get("inputs"));
            if (expected.has("rendered")) {
                assertEquals(expected.get("rendered").textValue(), actual.get("rendered").textValue(), "row " + i);
            } else {
                assertTrue(actual.get("error").textValue().contains("has no attribute 'startswith'"), actual.toString());
            }
        }
    }

    @Test
    void rendersQwen25VlRowsFromModelFolder(@TempDir Path dir) throws Exception {
        runAndCompare(rows("qwen2_5_vl"), dir, "--model", Fixtures.tinyModel().toString());
    }

    @Test
    void templateFileOverridesModel(@TempDir Path dir) throws Exception {
        runAndCompare(rows("qwen3"), dir, "--model", Fixtures.tinyModel().toString(),
                "--template", Fixtures.dir().resolve("templates/qwen3_chat_template.json").toString());
    }

    @Test
    void jinjaTemplateFile(@TempDir Path dir) throws Exception {
        runAndCompare(rows("qwen2_5_vl"), dir,
                "--template", Fixtures.dir().resolve("layout-transformers5/chat_template.jinja").toString());
    }

    @Test
    void missingTemplateIsAnError(@TempDir Path dir) throws Exception {
        Path in = dir.resolve("in.jsonl");
        Files.write(in, rows("qwen3"));
        assertEquals(2, Main.run("template", "--model", dir.toString(), "--jsonl", in.toString(),
                "--out", dir.resolve("o.jsonl").toString()));
    }
}
