package dev.vlm4j.generate;

import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

class StopStringsTest {

    /** Feeds the pieces, returns everything streamed (including what finish() releases). */
    private static String stream(StopStrings s, String... pieces) {
        StringBuilder out = new StringBuilder();
        for (String p : pieces) {
            var c = s.append(p);
            out.append(c.text());
            for (String stop : List.of("STOP", "###", "<|end|>"))
                assertFalse(out.toString().contains(stop), "a stop string was streamed: " + out);
        }
        out.append(s.finish());
        return out.toString();
    }

    @Test
    void stopSplitAcrossPieces() {
        StopStrings s = new StopStrings(List.of("STOP"));
        assertEquals("hello ", s.append("hello ").text());
        var c = s.append("wor");
        assertEquals("wor", c.text());
        assertEquals("ld ", s.append("ld ST").text());       // "ST" held back
        assertEquals("", s.append("O").text());               // "STO" held back
        c = s.append("P and more");
        assertTrue(c.stopped());
        assertEquals("STOP", c.matchedStop());
        assertEquals("", c.text());
        assertEquals("hello world ", s.text());
        assertEquals("", s.append("ignored").text());
        assertEquals("", s.finish());
        assertEquals("hello world ", s.text());
    }

    @Test
    void heldBackTextIsReleasedWhenItIsNotAStop() {
        StopStrings s = new StopStrings(List.of("STOP"));
        assertEquals("a", s.append("aST").text());
        assertEquals("STart", s.append("art").text());
        assertEquals("x", s.append("xS").text());
        assertEquals("S", s.finish());
        assertEquals("aSTartxS", s.text());
        assertFalse(s.stopped());
    }

    @Test
    void overlappingPrefixes() {
        // "aab": "aa" may start it; after "aaa" only the last two can, so one 'a' is released
        StopStrings s = new StopStrings(List.of("aab"));
        assertEquals("x", s.append("xa").text());
        assertEquals("", s.append("a").text());
        assertEquals("a", s.append("a").text());
        var c = s.append("b!");
        assertTrue(c.stopped());
        assertEquals("xa", s.text());   // "xa" + "a" + "aab"
        // one stop string is a prefix of another
        assertEquals("ab", stream(new StopStrings(List.of("###", "#")), "ab#", "##"));
        assertEquals("ab", StopStrings.truncate("ab##c", List.of("###", "##")));
    }

    @Test
    void neverEmitsTheStopString() {
        String text = "The answer is 42.<|end|> trailing";
        for (int cut = 1; cut < text.length(); cut++) {
            StopStrings s = new StopStrings(List.of("<|end|>"));
            String out = stream(s, text.substring(0, cut), text.substring(cut));
            assertEquals("The answer is 42.", out, "split at " + cut);
            assertTrue(s.stopped());
        }
        // one character at a time
        StopStrings s = new StopStrings(List.of("<|end|>"));
        String[] chars = text.split("");
        assertEquals("The answer is 42.", stream(s, chars));
    }

    @Test
    void multipleStopsEarliestWins() {
        StopStrings s = new StopStrings(List.of("STOP", "###"));
        String out = stream(s, "one ##", "# two STOP");
        assertEquals("one ", out);
        assertEquals("###", s.matchedStop());
        StopStrings t = new StopStrings(List.of("STOP", "###"));
        assertEquals("x", stream(t, "xSTOP###"));
        assertEquals("STOP", t.matchedStop());
        assertEquals("abc", StopStrings.truncate("abc", List.of("STOP", "###")));
    }

    @Test
    void noStopStringsStreamsEverything() {
        StopStrings s = new StopStrings(List.of());
        assertEquals("abc", s.append("abc").text());
        assertEquals("", s.finish());
        assertThrows(IllegalArgumentException.class, () -> new StopStrings(List.of("")));
    }
}
