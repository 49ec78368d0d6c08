package dev.vlm4j.generate;

/**
 * Switches MiMo-VL's thinking on or off. MiMo-VL 2508 skips its think block when the user turn ends with
 * {@code /no_think}; thinking is on by default.
 */
public final class ThinkingMode {
    /** The marker that turns thinking off when it ends a user turn. */
    public static final String NO_THINK = "/no_think";

    private ThinkingMode() {}

    /**
     * The user text for the requested mode: unchanged when thinking is enabled (or already switched off), otherwise
     * with {@code " /no_think"} appended (just {@code "/no_think"} for blank text).
     */
    public static String apply(String userText, boolean enabled) {
        String text = userText == null ? "" : userText;
        if (enabled || isDisabled(text)) return text;
        return text.isBlank() ? NO_THINK : text + " " + NO_THINK;
    }

    /** True when the user text already ends with {@code /no_think} (trailing whitespace ignored). */
    public static boolean isDisabled(String userText) {
        return userText != null && userText.stripTrailing().endsWith(NO_THINK);
    }
}
