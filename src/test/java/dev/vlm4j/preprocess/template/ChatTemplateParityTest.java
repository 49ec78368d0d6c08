package dev.vlm4j.preprocess.template;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** Every row of {@code chat_template_cases.jsonl} must render byte for byte as transformers did (or fail where it failed). */
class ChatTemplateParityTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    static List<JsonNode> rows() throws IOException {
        List<JsonNode> rows = new ArrayList<>();
        for (String line : Files.readAllLines(Fixtures.dir().resolve("chat_template_cases.jsonl"))) {
            if (!line.isBlank()) rows.add(JSON.readTree(line));
        }
        return rows;
    }

    static ChatTemplate templateFor(String name) {
        Path fx = Fixtures.dir();
        return switch (name) {
            case "qwen2_5_vl" -> ChatTemplate.load(fx.resolve("tiny-qwen2_5-vl"));
            case "qwen3" -> ChatTemplate.fromFile(fx.resolve("templates/qwen3_chat_template.json"));
            default -> throw new IllegalArgumentException("unknown template " + name);
        };
    }

    /** Fails with the first differing offset and a snippet of both texts around it. */
    static void assertSameText(String expected, String actual, String what) {
        if (expected.equals(actual)) return;
        int i = 0;
        while (i < expected.length() && i < actual.length() && expected.charAt(i) == actual.charAt(i)) i++;
        int from = Math.max(0, i - 30);
        fail(what + ": first difference at offset " + i + " (expected length " + expected.length() + ", actual "
                + actual.length() + ")\n expected: " + JSON.valueToTree(expected.substring(from, Math.min(expected.length(), i + 40)))
                + "\n   actual: " + JSON.valueToTree(actual.substring(from, Math.min(actual.length(), i + 40))));
    }

    @TestFactory
    List<DynamicTest> fixtureRows() throws IOException {
        List<DynamicTest> tests = new ArrayList<>();
        for (JsonNode row : rows()) {
            String name = row.get("template").asText() + " case " + row.get("case").asText();
            tests.add(DynamicTest.dynamicTest(name, () -> {
                ChatTemplate t = templateFor(row.get("template").asText());
                if (row.has("error")) {
                    TemplateException e = assertThrows(TemplateException.class, () -> t.render(row.get("inputs")), name);
                    assertFalse(e.getMessage().isBlank());
                } else {
                    assertSameText(row.get("rendered").textValue(), t.render(row.get("inputs")), name);
                }
            }));
        }
        assertFalse(tests.isEmpty());
        return tests;
    }

    @Test
    void listContentWithStartswithReportsPythonLikeError() throws IOException {
        JsonNode row = rows().stream().filter(r -> r.has("error")).findFirst().orElseThrow();
        TemplateException e = assertThrows(TemplateException.class, () -> templateFor("qwen3").render(row.get("inputs")));
        assertTrue(e.getMessage().startsWith("UndefinedError: 'list object' has no attribute 'startswith'"), e.getMessage());
        assertTrue(e.line() > 0, "error carries a template line: " + e.getMessage());
    }

    @Test
    void transformers5JinjaLayoutMatchesJsonLayout() throws IOException {
        ChatTemplate jinja = ChatTemplate.load(Fixtures.dir().resolve("layout-transformers5"));
        ChatTemplate json = ChatTemplate.load(Fixtures.tinyModel());
        int n = 0;
        for (JsonNode row : rows()) {
            if (!row.get("template").asText().equals("qwen2_5_vl")) continue;
            assertSameText(json.render(row.get("inputs")), jinja.render(row.get("inputs")), "case " + row.get("case"));
            assertSameText(row.get("rendered").textValue(), jinja.render(row.get("inputs")), "case " + row.get("case"));
            n++;
        }
        assertTrue(n > 0);
    }

    @Test
    void specialTokensComeFromTokenizerConfig() {
        ChatTemplate t = ChatTemplate.load(Fixtures.tinyModel());
        assertEquals("<|im_end|>", t.variables().get("eos_token"));
        assertFalse(t.variables().containsKey("bos_token"), "bos_token is null in the config");
        ChatTemplate eos = ChatTemplate.fromString("{{ eos_token }}|{{ bos_token is defined }}").withVariables(t.variables());
        assertEquals("<|im_end|>|False", eos.render(List.of(), java.util.Map.of()));
    }

    @Test
    void loadOrderAndMissingTemplate(@org.junit.jupiter.api.io.TempDir Path dir) throws IOException {
        TemplateException e = assertThrows(TemplateException.class, () -> ChatTemplate.load(dir));
        assertTrue(e.getMessage().contains(dir.toString()), e.getMessage());

        Files.writeString(dir.resolve("tokenizer_config.json"),
                "{\"chat_template\": [{\"name\": \"tool_use\", \"template\": \"T\"}, {\"name\": \"default\", \"template\": \"D{{ bos_token }}\"}], \"bos_token\": {\"content\": \"<s>\"}}");
        assertEquals("D<s>", ChatTemplate.load(dir).render(List.of(), java.util.Map.of()));
        Files.writeString(dir.resolve("chat_template.json"), "{\"chat_template\": \"J\"}");
        assertEquals("J", ChatTemplate.load(dir).render(List.of(), java.util.Map.of()));
        Files.writeString(dir.resolve("chat_template.jinja"), "K\n");
        assertEquals("K", ChatTemplate.load(dir).render(List.of(), java.util.Map.of()));
    }
}
