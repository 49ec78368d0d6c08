package dev.vlm4j.generate;

import java.util.List;

/**
 * Finds stop strings in streamed text. Feed decoded pieces to {@link #append}; each call returns the text that is
 * safe to stream now. Any tail that could be the start of a stop string is held back, so a stop string is never
 * streamed, not even in part. When one completes, the text before it is released and the matcher stops; as in
 * OpenAI's API and vLLM, the stop string itself is excluded from the output. Call {@link #finish()} when generation
 * ends for another reason, to release what was held back.
 * <p>
 * When several stop strings occur, the one starting earliest wins (on a tie, the one listed first).
 */
public final class StopStrings {
    private final List<String> stops;
    private final StringBuilder pending = new StringBuilder();
    private final StringBuilder emitted = new StringBuilder();
    private String matched;
    private boolean finished;

    /** What one {@link #append} released: text to stream, and the stop string if one just completed. */
    public record Chunk(String text, String matchedStop) {
        public boolean stopped() { return matchedStop != null; }
    }

    public StopStrings(List<String> stops) {
        for (String s : stops)
            if (s == null || s.isEmpty()) throw new IllegalArgumentException("stop strings must not be null or empty");
        this.stops = List.copyOf(stops);
    }

    /** Appends a piece of generated text. After a stop (or {@link #finish()}), further pieces are ignored. */
    public Chunk append(String piece) {
        if (matched != null || finished) return new Chunk("", null);
        pending.append(piece);
        int at = -1;
        String which = null;
        for (String s : stops) {
            int i = pending.indexOf(s);
            if (i >= 0 && (at < 0 || i < at)) { at = i; which = s; }
        }
        if (which != null) {
            matched = which;
            return new Chunk(release(at), which);
        }
        return new Chunk(release(pending.length() - heldBack()), null);
    }

    /** Ends the stream without a stop: releases the held-back text. */
    public String finish() {
        if (finished || matched != null) { finished = true; return ""; }
        finished = true;
        return release(pending.length());
    }

    private String release(int n) {
        String out = pending.substring(0, n);
        pending.delete(0, matched != null ? pending.length() : n);
        emitted.append(out);
        return out;
    }

    /** Length of the longest tail of the pending text that is a proper prefix of some stop string. */
    private int heldBack() {
        int longest = 0;
        for (String s : stops) longest = Math.max(longest, s.length());
        if (longest <= 1) return 0;
        String tail = pending.substring(Math.max(0, pending.length() - (longest - 1)));
        int best = 0;
        for (String s : stops) {
            for (int len = Math.min(s.length() - 1, tail.length()); len > best; len--) {
                if (tail.regionMatches(tail.length() - len, s, 0, len)) { best = len; break; }
            }
        }
        return best;
    }

    /** True once a stop string has completed. */
    public boolean stopped() { return matched != null; }

    /** The stop string that ended the text, or null. */
    public String matchedStop() { return matched; }

    /** Everything released so far: after a stop or {@link #finish()}, the final text (stop string excluded). */
    public String text() { return emitted.toString(); }

    /** The text cut before the earliest stop string (the whole text when none occurs). */
    public static String truncate(String text, List<String> stops) {
        StopStrings s = new StopStrings(stops);
        s.append(text);
        s.finish();
        return s.text();
    }
}
