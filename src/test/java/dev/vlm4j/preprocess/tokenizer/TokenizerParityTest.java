package dev.vlm4j.preprocess.tokenizer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/** Parity with Hugging Face on {@code tokenizer_cases.jsonl} (the real Qwen2 tokenizer of the tiny model). */
class TokenizerParityTest {
    private static Tokenizer tokenizer;
    private static List<Row> rows;

    /** One fixture row: {@code text} and what transformers produced for it. */
    record Row(int line, String text, int[] ids, String decoded, String decodedSkipSpecial) {}

    @BeforeAll
    static void load() throws IOException {
        tokenizer = Tokenizer.load(Fixtures.tinyModel());
        rows = readRows(Fixtures.dir().resolve("tokenizer_cases.jsonl"));
    }

    @AfterAll
    static void close() {
        if (tokenizer != null) tokenizer.close();
    }

    static List<Row> readRows(Path file) throws IOException {
        ObjectMapper mapper = new ObjectMapper();
        List<Row> out = new ArrayList<>();
        List<String> lines = Files.readAllLines(file);
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).isBlank()) continue;
            JsonNode n = mapper.readTree(lines.get(i));
            int[] ids = new int[n.get("ids").size()];
            for (int k = 0; k < ids.length; k++) ids[k] = n.get("ids").get(k).asInt();
            out.add(new Row(i + 1, n.get("text").asText(), ids, n.get("decoded").asText(),
                    n.get("decoded_skip_special").asText()));
        }
        return out;
    }

    @TestFactory
    Stream<DynamicTest> encodeMatchesHuggingFace() {
        return rows.stream().map(r -> DynamicTest.dynamicTest("line " + r.line(),
                () -> assertSameIds(r, r.ids(), tokenizer.encode(r.text()))));
    }

    @TestFactory
    Stream<DynamicTest> decodeMatchesHuggingFace() {
        return rows.stream().map(r -> DynamicTest.dynamicTest("line " + r.line(), () -> {
            assertSameText(r, "decode(ids, skipSpecial=false)", r.decoded(), tokenizer.decode(r.ids(), false));
            assertSameText(r, "decode(ids, skipSpecial=true)", r.decodedSkipSpecial(), tokenizer.decode(r.ids(), true));
        }));
    }

    @TestFactory
    Stream<DynamicTest> streamingConcatenatesToDecoded() {
        return rows.stream().map(r -> DynamicTest.dynamicTest("line " + r.line(), () -> {
            for (boolean skip : new boolean[] {false, true}) {
                StreamDecoder stream = new StreamDecoder(tokenizer, skip);
                StringBuilder sb = new StringBuilder();
                for (int id : r.ids()) {
                    String piece = stream.push(id);
                    assertTrue(piece.isEmpty() || piece.charAt(piece.length() - 1) != '\uFFFD',
                            () -> "emitted an incomplete character for " + describe(r));
                    sb.append(piece);
                }
                sb.append(stream.finish());
                assertSameText(r, "streamed (skipSpecial=" + skip + ")",
                        skip ? r.decodedSkipSpecial() : r.decoded(), sb.toString());
            }
        }));
    }

    @Test
    void streamHoldsBackSplitCharacters() {
        // rare 4-byte characters (not in the vocabulary) are spread over several byte-level tokens
        String text = "ok 𝄞 世界🦩!";
        int[] ids = tokenizer.encode(text);
        StreamDecoder stream = new StreamDecoder(tokenizer, false);
        StringBuilder sb = new StringBuilder();
        int held = 0;
        for (int id : ids) {
            String piece = stream.push(id);
            if (piece.isEmpty()) held++;
            assertTrue(piece.indexOf('\uFFFD') < 0, () -> "partial character emitted: " + piece);
            sb.append(piece);
        }
        assertEquals("", stream.finish());
        assertEquals(text, sb.toString());
        assertTrue(held > 0, "expected at least one token to complete no character on its own");
    }

    @Test
    void streamFinishFlushesIncompleteTail() {
        int[] ids = tokenizer.encode("🦩");
        assertTrue(ids.length > 1, "test needs a multi-token character");
        StreamDecoder stream = new StreamDecoder(tokenizer, false);
        assertEquals("", stream.push(ids[0]));
        assertEquals(tokenizer.decode(new int[] {ids[0]}, false), stream.finish());
    }

    @Test
    void longTextIsNotTruncated() {
        String text = "The quick brown fox jumps over the lazy dog. ".repeat(250);
        int[] ids = tokenizer.encode(text);
        assertTrue(ids.length > 2000, "expected > 2000 tokens, got " + ids.length);
        assertEquals(text, tokenizer.decode(ids, false));
    }

    @Test
    void specialTokensAreMatchedWholeAndLookedUp() {
        int imStart = tokenizer.requireTokenId("<|im_start|>");
        int imagePad = tokenizer.requireTokenId("<|image_pad|>");
        assertEquals(151644, imStart);
        assertEquals(151655, imagePad);
        int[] ids = tokenizer.encode("<|im_start|>user\n<|vision_start|><|image_pad|><|image_pad|><|vision_end|>");
        assertEquals(imStart, ids[0]);
        assertEquals(2, java.util.Arrays.stream(ids).filter(i -> i == imagePad).count());
        assertEquals("<|im_start|>", tokenizer.tokenText(imStart));
        assertEquals("Ġworld", tokenizer.tokenText(1879));
        assertEquals(1879, tokenizer.tokenId("Ġworld"));
        assertEquals(-1, tokenizer.tokenId("<|no_such_token|>"));
        assertNull(tokenizer.tokenText(-1));
        assertNull(tokenizer.tokenText(tokenizer.vocabSize()));
        assertEquals(151669, tokenizer.vocabSize()); // 151643 BPE entries + 26 added tokens
        assertEquals(imStart, tokenizer.specialTokens().get("<|im_start|>"));
        assertEquals(151643, tokenizer.specialTokens().get("<|endoftext|>"));
        assertTrue(tokenizer.isSpecial(imStart));
        assertTrue(!tokenizer.isSpecial(1879));
        assertThrows(TokenizerException.class, () -> tokenizer.requireTokenId("<|no_such_token|>"));
    }

    @Test
    void missingTokenizerFileNamesFileAndFix(@TempDir Path dir) {
        TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.load(dir));
        assertTrue(e.getMessage().contains(dir.resolve("tokenizer.json").toString()), e.getMessage());
        assertTrue(e.getMessage().contains("--model"), e.getMessage());
        TokenizerException e2 = assertThrows(TokenizerException.class, () -> Tokenizer.load(dir.resolve("nope")));
        assertTrue(e2.getMessage().contains("model folder not found: " + dir.resolve("nope")), e2.getMessage());
    }

    @Test
    void malformedTokenizerFileIsReported(@TempDir Path dir) throws IOException {
        Files.writeString(dir.resolve("tokenizer.json"), "{\"model\": {\"vocab\": ");
        TokenizerException e = assertThrows(TokenizerException.class, () -> Tokenizer.load(dir));
        assertTrue(e.getMessage().contains(dir.resolve("tokenizer.json").toString()), e.getMessage());
    }

    @Test
    void concurrentEncodeAndDecodeAgree() throws Exception {
        try (ExecutorService pool = Executors.newFixedThreadPool(4)) {
            List<Future<?>> futures = new ArrayList<>();
            for (int t = 0; t < 4; t++) {
                futures.add(pool.submit(() -> {
                    for (int rep = 0; rep < 20; rep++) {
                        for (Row r : rows) {
                            assertSameIds(r, r.ids(), tokenizer.encode(r.text()));
                            assertSameText(r, "concurrent decode", r.decoded(), tokenizer.decode(r.ids(), false));
                        }
                    }
                    return null;
                }));
            }
            for (Future<?> f : futures) f.get();
        }
    }

    @Test
    void closedTokenizerFailsClearly() {
        Tokenizer t = Tokenizer.load(Fixtures.tinyModel());
        assertArrayEquals(new int[] {9707, 1879}, t.encode("Hello world"));
        t.close();
        t.close();
        assertThrows(TokenizerException.class, () -> t.encode("Hello"));
    }

    private static void assertSameIds(Row r, int[] expected, int[] actual) {
        int n = Math.min(expected.length, actual.length);
        for (int i = 0; i < n; i++) {
            if (expected[i] != actual[i]) {
                fail("ids differ at index " + i + " (expected " + expected[i] + ", got " + actual[i] + ") for "
                        + describe(r));
            }
        }
        if (expected.length != actual.length) {
            fail("ids differ at index " + n + " (expected " + expected.length + " ids, got " + actual.length + ") for "
                    + describe(r));
        }
    }

    private static void assertSameText(Row r, String what, String expected, String actual) {
        if (expected.equals(actual)) return;
        int i = 0;
        while (i < expected.length() && i < actual.length() && expected.charAt(i) == actual.charAt(i)) i++;
        fail(what + " differs at char index " + i + " (expected " + quote(expected) + ", got " + quote(actual)
                + ") for " + describe(r));
    }

    private static String describe(Row r) {
        return "tokenizer_cases.jsonl line " + r.line() + ", text " + quote(r.text());
    }

    private static String quote(String s) {
        String q = s.length() > 200 ? s.substring(0, 200) + "..." : s;
        return '"' + q.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t") + '"';
    }
}
