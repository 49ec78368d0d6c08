package dev.vlm4j.preprocess.template;

/**
 * Jinja2's default {@code Undefined}: the value of a missing variable, attribute or item. It prints as the empty
 * string, is falsy, iterates as empty and has length 0, but any other use (attribute or item access, calling it,
 * arithmetic, ordering, JSON serialisation) raises an {@code UndefinedError} carrying the reason it is undefined.
 */
final class Undefined {
    private final String reason;
    private final String errorClass;

    private Undefined(String reason, String errorClass) {
        this.reason = reason;
        this.errorClass = errorClass;
    }

    /** A missing variable {@code name}. */
    static Undefined name(String name) {
        return new Undefined("'" + name + "' is undefined", "UndefinedError");
    }

    /** A missing attribute (or string key) {@code name} of {@code obj}. */
    static Undefined attribute(Object obj, String name) {
        return new Undefined(PyValues.objectTypeRepr(obj) + " has no attribute '" + name + "'", "UndefinedError");
    }

    /** A missing element {@code key} of {@code obj}. */
    static Undefined element(Object obj, Object key) {
        return new Undefined(PyValues.objectTypeRepr(obj) + " has no element " + PyValues.repr(key), "UndefinedError");
    }

    /** An attribute the immutable sandbox forbids (mutating methods such as {@code list.append}). */
    static Undefined unsafe(Object obj, String name) {
        return new Undefined("access to attribute '" + name + "' of '" + PyValues.typeName(obj)
                + "' object is unsafe.", "SecurityError");
    }

    /** A value that is simply undefined, without a recorded reason (e.g. {@code a if false}). */
    static Undefined plain() {
        return new Undefined("the value is undefined", "UndefinedError");
    }

    /** The error raised when this undefined value is used. */
    TemplateException error() {
        return new TemplateException(errorClass + ": " + reason);
    }

    @Override
    public String toString() {
        return "";
    }
}
