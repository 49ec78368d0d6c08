package dev.vlm4j.generate;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static dev.vlm4j.generate.ReasoningStream.Kind.CONTENT;
import static dev.vlm4j.generate.ReasoningStream.Kind.REASONING;
import static org.junit.jupiter.api.Assertions.*;

class ReasoningSplitTest {
    private static final String FULL = "<think>\nLet me look.\nIt is a cat.\n</think>\n\nA cat.";

    private static ReasoningSplit viaStream(boolean prefilled, String... pieces) {
        ReasoningStream s = new ReasoningStream(prefilled);
        List<ReasoningStream.Event> events = new ArrayList<>();
        for (String p : pieces) events.addAll(s.feed(p));
        events.addAll(s.finish());
        StringBuilder r = new StringBuilder(), a = new StringBuilder();
        for (var e : events) (e.kind() == REASONING ? r : a).append(e.text());
        return new ReasoningSplit(s.hasReasoning() ? r.toString() : null, a.toString());
    }

    @Test
    void normal() {
        ReasoningSplit s = ReasoningSplit.of(FULL);
        assertEquals("Let me look.\nIt is a cat.", s.reasoning());
        assertEquals("A cat.", s.answer());
        assertTrue(s.hasReasoning());
    }

    @Test
    void noThink() {
        ReasoningSplit s = ReasoningSplit.of("Just an answer.\n");
        assertNull(s.reasoning());
        assertEquals("Just an answer.\n", s.answer());
        assertEquals(" <thin", ReasoningSplit.of(" <thin").answer());   // a partial tag at the end is text
        assertEquals("", ReasoningSplit.of("").answer());
    }

    @Test
    void truncatedThink() {
        ReasoningSplit s = ReasoningSplit.of("<think>\nStill thinking\n</thi");
        assertEquals("Still thinking\n</thi", s.reasoning());
        assertEquals("", s.answer());
        assertEquals("abc", ReasoningSplit.of("<think>abc\n\n").reasoning());
        assertEquals("", ReasoningSplit.of("<think>").reasoning());
    }

    @Test
    void emptyThinkAndPrefilledThink() {
        ReasoningSplit s = ReasoningSplit.of("<think>\n\n</think>\n\nAnswer");
        assertEquals("", s.reasoning());
        assertEquals("Answer", s.answer());
        ReasoningSplit p = ReasoningSplit.of("\nreason\n</think>\n\nAnswer", true);
        assertEquals("reason", p.reasoning());
        assertEquals("Answer", p.answer());
    }

    @Test
    void streamingAcrossTagBoundaries() {
        ReasoningSplit expected = ReasoningSplit.of(FULL);
        assertEquals(expected, viaStream(false, "<thi", "nk>\nLet me look.\nIt is a cat.\n</thi", "nk>\n\nA cat."));
        for (int cut = 0; cut <= FULL.length(); cut++)
            assertEquals(expected, viaStream(false, FULL.substring(0, cut), FULL.substring(cut)), "split at " + cut);
        for (int cut = 0; cut <= FULL.length(); cut++)
            for (int cut2 = cut; cut2 <= FULL.length(); cut2 += 3)
                assertEquals(expected, viaStream(false, FULL.substring(0, cut), FULL.substring(cut, cut2), FULL.substring(cut2)));
        assertEquals(expected, viaStream(false, FULL.split("")));
    }

    @Test
    void streamingEventsAreTaggedAndWithheldOnlyWhenNeeded() {
        ReasoningStream s = new ReasoningStream();
        assertEquals(List.of(), s.feed("<think>\n"));
        assertEquals(List.of(new ReasoningStream.Event(REASONING, "abc")), s.feed("abc\n"));    // newline held
        assertEquals(List.of(new ReasoningStream.Event(REASONING, "\ndef")), s.feed("def</th"));
        assertEquals(List.of(), s.feed("ink>\n"));
        assertEquals(List.of(new ReasoningStream.Event(CONTENT, "Yes")), s.feed("Yes"));
        assertEquals(List.of(), s.finish());
        ReasoningStream plain = new ReasoningStream();
        assertEquals(List.of(new ReasoningStream.Event(CONTENT, "Hi <think>")), plain.feed("Hi <think>"));
    }

    @Test
    void thinkingMode() {
        assertEquals("Describe it. /no_think", ThinkingMode.apply("Describe it.", false));
        assertEquals("Describe it.", ThinkingMode.apply("Describe it.", true));
        assertEquals("x /no_think", ThinkingMode.apply("x /no_think", false));
        assertEquals("/no_think", ThinkingMode.apply("", false));
        assertTrue(ThinkingMode.isDisabled("x /no_think \n"));
    }
}
