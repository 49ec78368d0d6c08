package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.api.VisionLanguageModel;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Dataset handling with ms-swift's rules on the tiny model's tokenizer and template: labels on every assistant turn
 * ({@code <|im_end|>\n} included), query/response/history rows, truncation strategies, strict and lenient loading,
 * {@code #N} sampling with repeats, and the validation split.
 */
class SftDatasetTest {
    @TempDir Path tmp;
    static VisionLanguageModel vlm;

    @BeforeAll static void load() { vlm = VisionLanguageModel.load(Fixtures.tinyModel()); }
    @AfterAll static void close() { vlm.close(); }

    private static final String MULTI = "{\"messages\":[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"Hi?\"},"
            + "{\"role\":\"assistant\",\"content\":\"Hello.\"},{\"role\":\"user\",\"content\":\"Bye?\"},{\"role\":\"assistant\",\"content\":\"Goodbye.\"}]}";
    private static final String ALIASES = "{\"system\":\"Be brief.\",\"history\":[[\"Hi?\",\"Hello.\"]],\"query\":\"Bye?\",\"response\":\"Goodbye.\"}";

    private SftDataset.Example encodeOne(String row) throws Exception {
        Path f = tmp.resolve("d" + System.nanoTime() + ".jsonl");
        Files.writeString(f, row + "\n");
        SftDataset d = SftDataset.load(f.toString());
        return d.encode(vlm, d.samples().getFirst());
    }

    /** The text of the labelled tokens, spans separated by "|". */
    private static String labelled(SftDataset.Example e) {
        StringBuilder sb = new StringBuilder();
        List<Integer> run = new ArrayList<>();
        for (int i = 0; i <= e.labels().length; i++) {
            if (i < e.labels().length && e.labels()[i] != -100) { run.add((int) e.labels()[i]); continue; }
            if (!run.isEmpty()) {
                sb.append(sb.isEmpty() ? "" : "|").append(vlm.tokenizer().decode(run.stream().mapToInt(Integer::intValue).toArray(), false));
                run.clear();
            }
        }
        return sb.toString();
    }

    @Test
    void everyAssistantTurnIsLabelledWithItsImEnd() throws Exception {
        SftDataset.Example e = encodeOne(MULTI);
        assertEquals("Hello.<|im_end|>\n|Goodbye.<|im_end|>\n", labelled(e), "labelled spans");
        assertEquals("Goodbye.", e.answer());
        assertEquals(vlm.tokenizer().encode(e.promptText()).length, e.promptLength(), "prompt length = tokens before the last answer");
        assertTrue(e.promptText().endsWith("<|im_start|>assistant\n"), e.promptText());
    }

    /** The fixture cases with a training answer: ids and labels equal transformers' train_input_ids / train_labels. */
    @Test
    @SuppressWarnings("unchecked")
    void fixtureTrainingSequencesMatch() throws Exception {
        for (String name : List.of("text_only", "lora", "image_describe")) {
            dev.vlm4j.trace.FixtureCase c = dev.vlm4j.trace.FixtureCase.load(Fixtures.cases().resolve(name));
            List<Map<String, Object>> msgs = new ArrayList<>();
            for (Map<String, Object> m : c.messages()) {
                Object content = m.get("content");
                if (content instanceof List<?> parts) {
                    StringBuilder sb = new StringBuilder();
                    for (Object o : parts) {
                        Map<String, Object> part = (Map<String, Object>) o;
                        sb.append("image".equals(part.get("type")) ? "<image>" : String.valueOf(part.get("text")));
                    }
                    content = sb.toString();
                }
                msgs.add(new LinkedHashMap<>(Map.of("role", m.get("role"), "content", content)));
            }
            msgs.add(new LinkedHashMap<>(Map.of("role", "assistant", "content", c.answer())));
            List<Object> images = new ArrayList<>();
            for (Path p : c.images()) images.add(p.toString());
            SftDataset.Sample sample = new SftDataset.Sample(msgs, images, List.of(), name, null);
            SftDataset d = SftDataset.load(List.of(writeRow(msgs, images).toString()), true, 42, s -> {});
            SftDataset.Example e = d.encode(vlm, sample);
            try (dev.vlm4j.tensor.safetensors.SafeTensorsFile f = dev.vlm4j.tensor.safetensors.SafeTensorsFile.open(
                    Fixtures.cases().resolve(name).resolve("tensors.safetensors"))) {
                long[] ids = toLongs(f.get("train_input_ids")), labels = toLongs(f.get("train_labels"));
                assertArrayEquals(ids, Arrays.stream(e.ids()).asLongStream().toArray(), name + ": train_input_ids");
                assertArrayEquals(labels, e.labels(), name + ": train_labels (" + Arrays.stream(labels).filter(l -> l != -100).count()
                        + " labelled in the fixture, " + Arrays.stream(e.labels()).filter(l -> l != -100).count() + " here)");
            }
        }
    }

    private Path writeRow(List<Map<String, Object>> msgs, List<Object> images) throws Exception {
        Path f = tmp.resolve("row" + System.nanoTime() + ".jsonl");
        Files.writeString(f, new com.fasterxml.jackson.databind.ObjectMapper().writeValueAsString(Map.of("messages", msgs, "images", images)) + "\n");
        return f;
    }

    private static long[] toLongs(dev.vlm4j.tensor.Tensor t) {
        long[] out = new long[(int) t.numel()];
        for (int i = 0; i < out.length; i++) out[i] = t.dtype() == dev.vlm4j.tensor.DType.I64
                ? t.data().getAtIndex(java.lang.foreign.ValueLayout.JAVA_LONG_UNALIGNED, i) : (long) t.toFloatArray()[i];
        return out;
    }

    @Test
    void queryResponseHistoryRowsEqualTheirMessagesForm() throws Exception {
        SftDataset.Example a = encodeOne(MULTI), b = encodeOne(ALIASES);
        assertArrayEquals(a.ids(), b.ids(), "ids of the query/response/history form vs the messages form");
        assertArrayEquals(a.labels(), b.labels(), "labels of the query/response/history form vs the messages form");
    }

    @Test
    void truncationStrategies() throws Exception {
        SftDataset.Example e = encodeOne(MULTI);
        int n = e.ids().length, max = n - 5;
        int[] vision = {151655, 151656, 151652, 151653};
        StringBuilder why = new StringBuilder();
        assertNull(SftDataset.truncate(e, max, "delete", vision, why), "delete drops a sample over max_length");
        assertTrue(why.toString().contains("> --max_length"), why.toString());
        SftDataset.Example left = SftDataset.truncate(e, max, "left", vision, new StringBuilder());
        assertArrayEquals(Arrays.copyOfRange(e.ids(), 5, n), left.ids(), "left keeps the last max_length tokens");
        assertArrayEquals(Arrays.copyOfRange(e.labels(), 5, n), left.labels(), "left keeps their labels");
        SftDataset.Example right = SftDataset.truncate(e, max, "right", vision, new StringBuilder());
        assertArrayEquals(Arrays.copyOf(e.ids(), max), right.ids(), "right keeps the first max_length tokens");
        assertSame(e, SftDataset.truncate(e, n, "delete", vision, new StringBuilder()), "a sample that fits is kept as is");
        why.setLength(0);
        assertNull(SftDataset.truncate(e, 4, "right", vision, why), "right truncation that leaves no labelled token drops the sample");
        assertTrue(why.toString().contains("no assistant token"), why.toString());
    }

    @Test
    void strictReportsFileAndLineLenientSkipsAndCounts() throws Exception {
        Path f = tmp.resolve("bad.jsonl");
        Files.writeString(f, MULTI + "\n{not json\n{\"foo\":1}\n" + ALIASES + "\n{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}\n");
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> SftDataset.load(List.of(f.toString()), true, 42, s -> {}));
        assertTrue(ex.getMessage().contains(f + ":2"), "strict error names file and line: " + ex.getMessage());
        List<String> log = new ArrayList<>();
        SftDataset d = SftDataset.load(List.of(f.toString()), false, 42, log::add);
        assertEquals(2, d.samples().size(), "usable rows");
        assertEquals(3, d.skipped(), "skipped malformed rows (bad JSON, no messages, last turn not the assistant's)");
        assertTrue(log.stream().anyMatch(l -> l.contains(f + ":3")), "skips are logged with file and line: " + log);
        assertTrue(log.stream().anyMatch(l -> l.contains(f + ":5")), "skips are logged with file and line: " + log);
    }

    @Test
    void hashNRepeatsWhenLargerThanTheFileAndSplitHoldsOut() throws Exception {
        Path f = tmp.resolve("three.jsonl");
        Files.writeString(f, MULTI + "\n" + ALIASES + "\n" + MULTI.replace("Goodbye.", "Ciao.") + "\n");
        SftDataset d = SftDataset.load(List.of(f + "#7"), true, 42, s -> {});
        assertEquals(7, d.samples().size(), "#7 of 3 rows");
        Map<String, Integer> count = new HashMap<>();
        for (var s : d.samples()) count.merge(s.source(), 1, Integer::sum);
        assertEquals(3, count.size(), "every row is used");
        for (int c : count.values()) assertTrue(c == 2 || c == 3, "each row twice or three times: " + count);
        assertEquals(2, SftDataset.load(List.of(f + "#2"), true, 42, s -> {}).samples().size(), "#2 of 3 rows");
        List<SftDataset> parts = d.split(0.3, 42);
        assertEquals(3, parts.get(1).samples().size(), "ceil(0.3 * 7) held out");
        assertEquals(4, parts.get(0).samples().size(), "the rest trains");
    }
}
