package dev.vlm4j.preprocess.tokenizer;

/**
 * A tokenizer could not be loaded or used: a missing or malformed {@code tokenizer.json}, an unknown token, a
 * closed tokenizer, or a failure of the native Hugging Face tokenizers library. The message always says what
 * went wrong and, where there is one, how to fix it, so that the CLI can show it as a one-line error.
 */
public class TokenizerException extends RuntimeException {
    /** Creates an exception with a message that says what went wrong and how to fix it. */
    public TokenizerException(String message) {
        super(message);
    }

    /** Creates an exception with a message and the underlying cause. */
    public TokenizerException(String message, Throwable cause) {
        super(message, cause);
    }
}
