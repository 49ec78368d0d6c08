package dev.vlm4j.generate;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits streamed model output into reasoning and answer. MiMo-VL answers {@code <think>\n...\n</think>\n\n<answer>}:
 * text between the tags is {@link Kind#REASONING} (without the newlines next to the tags), text after
 * {@code </think>} is {@link Kind#CONTENT} (without its leading whitespace). Output that does not start with
 * {@code <think>} (leading whitespace allowed) is all content. Output whose {@code </think>} never comes
 * (truncated) is all reasoning.
 * <p>
 * Tags may be split across pieces ({@code "</thi" + "nk>"}): text that might begin a tag, and newlines that might
 * precede {@code </think>}, are held back until the next piece decides. For templates that put {@code <think>} into
 * the prompt, construct with {@code startInReasoning = true}.
 */
public final class ReasoningStream {
    public static final String OPEN = "<think>";
    public static final String CLOSE = "</think>";

    /** Which part of the output a piece of text belongs to. */
    public enum Kind { REASONING, CONTENT }

    /** A piece of text of one kind. */
    public record Event(Kind kind, String text) {}

    private enum State { START, REASONING, CONTENT }

    private State state;
    private final StringBuilder pending = new StringBuilder();
    private boolean stripLeading;
    private boolean sawReasoning;

    /** A stream whose output may begin with {@code <think>}. */
    public ReasoningStream() { this(false); }

    /** @param startInReasoning the prompt already opened the think block (the output starts inside it) */
    public ReasoningStream(boolean startInReasoning) {
        state = startInReasoning ? State.REASONING : State.START;
        stripLeading = startInReasoning;
        sawReasoning = startInReasoning;
    }

    /** True once a think block has been opened (so the output has a reasoning part, possibly empty). */
    public boolean hasReasoning() { return sawReasoning; }

    /** Feeds a piece of output; returns the events it releases (possibly none). */
    public List<Event> feed(String piece) {
        List<Event> out = new ArrayList<>();
        pending.append(piece);
        boolean progress = true;
        while (progress && !pending.isEmpty()) progress = step(out);
        return out;
    }

    /** Ends the stream: releases everything held back. */
    public List<Event> finish() {
        List<Event> out = new ArrayList<>();
        switch (state) {
            case START -> emit(out, Kind.CONTENT, pending.toString());
            case REASONING -> emit(out, Kind.REASONING, stripTrailingNewlines(pending.toString()));
            case CONTENT -> { if (!stripLeading) emit(out, Kind.CONTENT, pending.toString()); }
        }
        pending.setLength(0);
        return out;
    }

    /** One transition; false when more input is needed. */
    private boolean step(List<Event> out) {
        switch (state) {
            case START -> {
                String s = pending.toString(), t = s.stripLeading();
                if (t.startsWith(OPEN)) {
                    pending.delete(0, s.length() - t.length() + OPEN.length());
                    state = State.REASONING;
                    stripLeading = true;
                    sawReasoning = true;
                    return true;
                }
                if (OPEN.startsWith(t)) return false; // whitespace or a partial "<think>": wait
                state = State.CONTENT;
                stripLeading = false;
                return true;
            }
            case REASONING -> {
                if (stripLeading) {
                    int i = 0;
                    while (i < pending.length() && isNewline(pending.charAt(i))) i++;
                    pending.delete(0, i);
                    if (pending.isEmpty()) return false;
                    stripLeading = false;
                }
                int close = pending.indexOf(CLOSE);
                if (close >= 0) {
                    emit(out, Kind.REASONING, stripTrailingNewlines(pending.substring(0, close)));
                    pending.delete(0, close + CLOSE.length());
                    state = State.CONTENT;
                    stripLeading = true;
                    return true;
                }
                int keep = pending.length() - partialSuffix(pending, CLOSE);
                while (keep > 0 && isNewline(pending.charAt(keep - 1))) keep--;
                emit(out, Kind.REASONING, pending.substring(0, keep));
                pending.delete(0, keep);
                return false;
            }
            case CONTENT -> {
                if (stripLeading) {
                    String t = pending.toString().stripLeading();
                    pending.setLength(0);
                    pending.append(t);
                    if (t.isEmpty()) return false;
                    stripLeading = false;
                }
                emit(out, Kind.CONTENT, pending.toString());
                pending.setLength(0);
                return false;
            }
        }
        return false;
    }

    private static void emit(List<Event> out, Kind kind, String text) {
        if (!text.isEmpty()) out.add(new Event(kind, text));
    }

    private static boolean isNewline(char c) { return c == '\n' || c == '\r'; }

    private static String stripTrailingNewlines(String s) {
        int n = s.length();
        while (n > 0 && isNewline(s.charAt(n - 1))) n--;
        return s.substring(0, n);
    }

    /** Length of the longest tail of s that is a proper prefix of tag. */
    private static int partialSuffix(CharSequence s, String tag) {
        for (int len = Math.min(tag.length() - 1, s.length()); len > 0; len--) {
            boolean ok = true;
            for (int i = 0; i < len && ok; i++) ok = s.charAt(s.length() - len + i) == tag.charAt(i);
            if (ok) return len;
        }
        return 0;
    }
}
