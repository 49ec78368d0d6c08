package dev.vlm4j.preprocess.template;

/**
 * Raised when a chat template cannot be parsed or fails while rendering (an undefined value used in an operation,
 * a type error, {@code raise_exception(...)} called by the template, ...). The message names the Python / Jinja2
 * error class it corresponds to (e.g. {@code UndefinedError: 'list object' has no attribute 'startswith'}) and,
 * where known, the template line.
 */
public class TemplateException extends RuntimeException {
    private final String detail;
    private final int line;

    /** An error without a known template line. */
    public TemplateException(String message) {
        this(message, 0, null);
    }

    /** An error at the given 1-based template line (0 = unknown). */
    public TemplateException(String message, int line) {
        this(message, line, null);
    }

    /** An error at the given 1-based template line (0 = unknown) with a cause. */
    public TemplateException(String message, int line, Throwable cause) {
        super(line > 0 ? message + " (template line " + line + ")" : message, cause);
        this.detail = message;
        this.line = line;
    }

    /** The 1-based template line where the error happened, or 0 when unknown. */
    public int line() {
        return line;
    }

    /** The message without the line suffix. */
    public String detail() {
        return detail;
    }

    /** This exception if it already has a line, else a copy that carries {@code atLine}. */
    TemplateException withLine(int atLine) {
        if (line > 0 || atLine <= 0) return this;
        TemplateException e = new TemplateException(detail, atLine, getCause());
        e.setStackTrace(getStackTrace());
        return e;
    }
}
