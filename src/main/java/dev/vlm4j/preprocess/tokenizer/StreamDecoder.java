package dev.vlm4j.preprocess.tokenizer;

import java.util.Arrays;
import java.util.Objects;

/**
 * Turns generated token ids, fed one at a time, into text as soon as it is complete: the incremental
 * detokenization of Hugging Face's {@code TextStreamer} and vLLM's {@code detokenize_incrementally}.
 *
 * <p>With byte-level BPE one character may span several tokens (most CJK characters and emoji do), and a
 * token's text can depend on its neighbours, so tokens cannot be decoded one by one. Instead this keeps two
 * offsets into the ids seen so far: text is emitted as {@code decode(ids[prefix..]) - decode(ids[prefix..read])},
 * and only when that text does not end in U+FFFD (a character whose remaining bytes are still to come). The
 * window then moves on, so each step decodes only a few tokens. The concatenation of all {@link #push} results
 * and a final {@link #finish()} equals {@code tokenizer.decode(allIds, skipSpecial)}.
 *
 * <p>Holds per-stream state: use one instance per generated sequence, from one thread at a time.
 */
public final class StreamDecoder {
    private static final char REPLACEMENT = '\uFFFD';

    private final Tokenizer tokenizer;
    private final boolean skipSpecial;
    private int[] ids = new int[64];
    private int size;
    private int prefixOffset;
    private int readOffset;
    private String prefixText = "";

    /**
     * @param tokenizer   the tokenizer the ids come from
     * @param skipSpecial leave special tokens (e.g. {@code <|im_end|>}) out of the text
     */
    public StreamDecoder(Tokenizer tokenizer, boolean skipSpecial) {
        this.tokenizer = Objects.requireNonNull(tokenizer, "tokenizer");
        this.skipSpecial = skipSpecial;
    }

    /**
     * Adds one token id and returns the text it completes: "" while a multi-byte character is still incomplete
     * (or the token is a skipped special token), otherwise the new text, possibly including earlier held-back
     * tokens.
     */
    public String push(int id) {
        if (size == ids.length) ids = Arrays.copyOf(ids, size * 2);
        ids[size++] = id;
        String text = tokenizer.decode(ids, prefixOffset, size, skipSpecial);
        if (text.length() <= prefixText.length() || text.charAt(text.length() - 1) == REPLACEMENT) return "";
        String delta = text.substring(prefixText.length());
        advance();
        return delta;
    }

    /**
     * Returns the text still held back (an incomplete character at the end decodes as U+FFFD, as in
     * {@link Tokenizer#decode}); call once when the sequence ends. The decoder can then keep going.
     */
    public String finish() {
        if (readOffset == size) return "";
        String text = tokenizer.decode(ids, prefixOffset, size, skipSpecial);
        String delta = text.length() > prefixText.length() ? text.substring(prefixText.length()) : "";
        advance();
        return delta;
    }

    /** The number of ids pushed so far. */
    public int tokenCount() {
        return size;
    }

    /** A copy of the ids pushed so far. */
    public int[] ids() {
        return Arrays.copyOf(ids, size);
    }

    /** Forgets all ids, to start a new sequence. */
    public void reset() {
        size = prefixOffset = readOffset = 0;
        prefixText = "";
    }

    /** Moves the window: the ids read so far become the context for the next piece of text. */
    private void advance() {
        prefixOffset = readOffset;
        readOffset = size;
        prefixText = tokenizer.decode(ids, prefixOffset, readOffset, skipSpecial);
    }
}
