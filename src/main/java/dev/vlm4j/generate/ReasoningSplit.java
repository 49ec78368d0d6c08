package dev.vlm4j.generate;

/**
 * A completed output split into reasoning and answer, with the same rules as {@link ReasoningStream}:
 * <ul>
 *   <li>{@code <think>\nR\n</think>\n\nA} gives reasoning {@code R} (newlines next to the tags removed) and
 *       answer {@code A} (leading whitespace removed);</li>
 *   <li>no {@code <think>} at the start: reasoning is null and the answer is the whole text;</li>
 *   <li>{@code <think>} without {@code </think>} (truncated): everything after the tag is reasoning, the answer is
 *       empty.</li>
 * </ul>
 *
 * @param reasoning the thinking text, or null when the output had no think block
 * @param answer    the answer text, never null
 */
public record ReasoningSplit(String reasoning, String answer) {

    /** Splits an output that may begin with {@code <think>}. */
    public static ReasoningSplit of(String text) { return of(text, false); }

    /**
     * Splits an output.
     *
     * @param startInReasoning the prompt already opened the think block, so the output starts inside it
     */
    public static ReasoningSplit of(String text, boolean startInReasoning) {
        ReasoningStream s = new ReasoningStream(startInReasoning);
        StringBuilder r = new StringBuilder(), a = new StringBuilder();
        for (var list : java.util.List.of(s.feed(text), s.finish()))
            for (ReasoningStream.Event e : list) (e.kind() == ReasoningStream.Kind.REASONING ? r : a).append(e.text());
        return new ReasoningSplit(s.hasReasoning() ? r.toString() : null, a.toString());
    }

    /** True when the output had a think block (possibly empty). */
    public boolean hasReasoning() { return reasoning != null; }
}
