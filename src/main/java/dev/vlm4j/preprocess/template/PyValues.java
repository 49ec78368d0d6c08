package dev.vlm4j.preprocess.template;

import com.fasterxml.jackson.databind.JsonNode;

import java.math.BigDecimal;
import java.math.BigInteger;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Iterator;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Python semantics for template values. Values are: {@code null} (None), {@link Boolean}, {@link Long} (int),
 * {@link Double} (float), {@link String}, {@link List} (list; {@link PyTuple} for tuples), {@link Map} (dict,
 * insertion ordered), {@link Namespace}, {@link LoopContext}, {@link PyCallable} and {@link Undefined}.
 * This class converts Java / Jackson input into that model and implements truthiness, {@code str()},
 * {@code repr()}, equality, ordering, arithmetic, membership and {@code json.dumps}.
 */
final class PyValues {
    private PyValues() {}

    // ------------------------------------------------------------------ conversion

    /** Deep-converts JSON-like Java values (Jackson nodes, maps, lists, boxed numbers) into template values. */
    static Object fromJava(Object v) {
        return switch (v) {
            case null -> null;
            case JsonNode n -> fromJson(n);
            case String s -> s;
            case Boolean b -> b;
            case Long l -> l;
            case Integer i -> (long) i;
            case Short s -> (long) s;
            case Byte b -> (long) b;
            case Double d -> d;
            case Float f -> (double) f;
            case BigInteger b -> b.bitLength() < 64 ? (Object) b.longValue() : (Object) b.doubleValue();
            case BigDecimal b -> b.doubleValue();
            case Character c -> c.toString();
            case Map<?, ?> m -> {
                Map<Object, Object> out = new LinkedHashMap<>();
                m.forEach((k, val) -> out.put(fromJava(k), fromJava(val)));
                yield out;
            }
            case PyTuple t -> t;
            case Collection<?> c -> {
                List<Object> out = new ArrayList<>(c.size());
                for (Object o : c) out.add(fromJava(o));
                yield out;
            }
            case Object[] a -> fromJava(List.of(a));
            default -> v;
        };
    }

    private static Object fromJson(JsonNode n) {
        if (n.isObject()) {
            Map<Object, Object> out = new LinkedHashMap<>();
            for (Map.Entry<String, JsonNode> e : n.properties()) out.put(e.getKey(), fromJson(e.getValue()));
            return out;
        }
        if (n.isArray()) {
            List<Object> out = new ArrayList<>(n.size());
            for (JsonNode c : n) out.add(fromJson(c));
            return out;
        }
        if (n.isTextual()) return n.textValue();
        if (n.isBoolean()) return n.booleanValue();
        if (n.isIntegralNumber()) return fromJava(n.bigIntegerValue());
        if (n.isNumber()) return n.doubleValue();
        return null;
    }

    // ------------------------------------------------------------------ type names and errors

    /** Python's {@code type(v).__name__}. */
    static String typeName(Object v) {
        return switch (v) {
            case null -> "NoneType";
            case Boolean b -> "bool";
            case Long l -> "int";
            case Double d -> "float";
            case String s -> "str";
            case PyTuple t -> "tuple";
            case List<?> l -> "list";
            case Map<?, ?> m -> "dict";
            case Namespace ns -> "Namespace";
            case LoopContext lc -> "LoopContext";
            case Undefined u -> "Undefined";
            case PyCallable c -> "function";
            default -> v.getClass().getSimpleName();
        };
    }

    /** Jinja2's {@code object_type_repr}: {@code None} or {@code 'list object'}. */
    static String objectTypeRepr(Object v) {
        return v == null ? "'None'" : "'" + typeName(v) + " object'";
    }

    static TemplateException typeError(String msg) {
        return new TemplateException("TypeError: " + msg);
    }

    // ------------------------------------------------------------------ truthiness, str, repr

    /** Python truthiness; undefined is false. */
    static boolean truthy(Object v) {
        return switch (v) {
            case null -> false;
            case Boolean b -> b;
            case Long l -> l != 0;
            case Double d -> d != 0.0;
            case String s -> !s.isEmpty();
            case Collection<?> c -> !c.isEmpty();
            case Map<?, ?> m -> !m.isEmpty();
            case Undefined u -> false;
            default -> true;
        };
    }

    /** Python's {@code str(v)} (undefined gives the empty string). */
    static String str(Object v) {
        return switch (v) {
            case String s -> s;
            case Undefined u -> "";
            case null -> "None";
            case Boolean b -> b ? "True" : "False";
            case Long l -> l.toString();
            case Double d -> formatFloat(d);
            default -> repr(v);
        };
    }

    /** Python's {@code repr(v)}. */
    static String repr(Object v) {
        return switch (v) {
            case String s -> reprString(s);
            case PyTuple t -> {
                StringBuilder sb = new StringBuilder("(");
                for (int i = 0; i < t.size(); i++) sb.append(i > 0 ? ", " : "").append(repr(t.get(i)));
                yield sb.append(t.size() == 1 ? ",)" : ")").toString();
            }
            case List<?> l -> {
                StringBuilder sb = new StringBuilder("[");
                for (int i = 0; i < l.size(); i++) sb.append(i > 0 ? ", " : "").append(repr(l.get(i)));
                yield sb.append("]").toString();
            }
            case Map<?, ?> m -> {
                StringBuilder sb = new StringBuilder("{");
                boolean first = true;
                for (Map.Entry<?, ?> e : m.entrySet()) {
                    if (!first) sb.append(", ");
                    first = false;
                    sb.append(repr(e.getKey())).append(": ").append(repr(e.getValue()));
                }
                yield sb.append("}").toString();
            }
            case Undefined u -> "Undefined";
            case null -> "None";
            case Boolean b -> str(b);
            case Long l -> str(l);
            case Double d -> str(d);
            default -> v.toString();
        };
    }

    private static String reprString(String s) {
        char quote = s.indexOf('\'') >= 0 && s.indexOf('"') < 0 ? '"' : '\'';
        StringBuilder sb = new StringBuilder(s.length() + 2).append(quote);
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            if (cp == '\\' || cp == quote) sb.append('\\').appendCodePoint(cp);
            else if (cp == '\n') sb.append("\\n");
            else if (cp == '\r') sb.append("\\r");
            else if (cp == '\t') sb.append("\\t");
            else if (isPrintable(cp)) sb.appendCodePoint(cp);
            else if (cp < 0x100) sb.append(String.format("\\x%02x", cp));
            else if (cp < 0x10000) sb.append(String.format("\\u%04x", cp));
            else sb.append(String.format("\\U%08x", cp));
        }
        return sb.append(quote).toString();
    }

    private static boolean isPrintable(int cp) {
        if (cp == ' ') return true;
        return switch (Character.getType(cp)) {
            case Character.CONTROL, Character.FORMAT, Character.SURROGATE, Character.PRIVATE_USE, Character.UNASSIGNED,
                 Character.LINE_SEPARATOR, Character.PARAGRAPH_SEPARATOR, Character.SPACE_SEPARATOR -> false;
            default -> true;
        };
    }

    /** Python's {@code repr(float)}: shortest round-tripping digits, scientific below 1e-4 and from 1e16. */
    static String formatFloat(double d) {
        if (Double.isNaN(d)) return "nan";
        if (Double.isInfinite(d)) return d > 0 ? "inf" : "-inf";
        if (d == 0) return 1 / d < 0 ? "-0.0" : "0.0";
        BigDecimal bd = new BigDecimal(Double.toString(d)).stripTrailingZeros();
        String digits = bd.unscaledValue().abs().toString();
        int exp = digits.length() - 1 - bd.scale();
        StringBuilder sb = new StringBuilder(d < 0 ? "-" : "");
        if (exp < -4 || exp >= 16) {
            sb.append(digits.charAt(0));
            if (digits.length() > 1) sb.append('.').append(digits, 1, digits.length());
            sb.append('e').append(exp < 0 ? '-' : '+');
            int a = Math.abs(exp);
            if (a < 10) sb.append('0');
            return sb.append(a).toString();
        }
        if (exp < 0) return sb.append("0.").append("0".repeat(-exp - 1)).append(digits).toString();
        if (digits.length() <= exp + 1) return sb.append(digits).append("0".repeat(exp + 1 - digits.length())).append(".0").toString();
        return sb.append(digits, 0, exp + 1).append('.').append(digits, exp + 1, digits.length()).toString();
    }

    // ------------------------------------------------------------------ equality and ordering

    private static boolean isNumber(Object v) {
        return v instanceof Long || v instanceof Double || v instanceof Boolean;
    }

    private static boolean isIntLike(Object v) {
        return v instanceof Long || v instanceof Boolean;
    }

    static long asLong(Object v) {
        return v instanceof Boolean b ? (b ? 1 : 0) : ((Number) v).longValue();
    }

    static double asDouble(Object v) {
        return v instanceof Boolean b ? (b ? 1 : 0) : ((Number) v).doubleValue();
    }

    /** Python's {@code a == b}. */
    static boolean eq(Object a, Object b) {
        if (a == b) return true;
        if (a == null || b == null) return false;
        if (a instanceof Undefined || b instanceof Undefined) return a instanceof Undefined && b instanceof Undefined;
        if (isNumber(a) && isNumber(b)) {
            if (isIntLike(a) && isIntLike(b)) return asLong(a) == asLong(b);
            return asDouble(a) == asDouble(b);
        }
        if (a instanceof List<?> la && b instanceof List<?> lb) {
            if ((a instanceof PyTuple) != (b instanceof PyTuple) || la.size() != lb.size()) return false;
            for (int i = 0; i < la.size(); i++) if (!eq(la.get(i), lb.get(i))) return false;
            return true;
        }
        if (a instanceof Map<?, ?> ma && b instanceof Map<?, ?> mb) {
            if (ma.size() != mb.size()) return false;
            for (Map.Entry<?, ?> e : ma.entrySet()) {
                if (!mb.containsKey(e.getKey()) || !eq(e.getValue(), mb.get(e.getKey()))) return false;
            }
            return true;
        }
        if (a instanceof String || b instanceof String) return a.equals(b);
        return a.equals(b);
    }

    /** Python ordering comparison {@code a op b} for {@code <, <=, >, >=}. */
    static boolean order(Object a, Object b, String op) {
        if (a instanceof Undefined u) throw u.error();
        if (b instanceof Undefined u) throw u.error();
        int c;
        if (isNumber(a) && isNumber(b)) {
            c = isIntLike(a) && isIntLike(b) ? Long.compare(asLong(a), asLong(b)) : Double.compare(asDouble(a), asDouble(b));
            if (Double.isNaN(asDouble(a)) || Double.isNaN(asDouble(b))) return false;
        } else if (a instanceof String sa && b instanceof String sb) {
            c = compareStrings(sa, sb);
        } else if (a instanceof List<?> la && b instanceof List<?> lb && (a instanceof PyTuple) == (b instanceof PyTuple)) {
            c = compareLists(la, lb);
        } else {
            throw typeError("'" + op + "' not supported between instances of '" + typeName(a) + "' and '" + typeName(b) + "'");
        }
        return switch (op) {
            case "<" -> c < 0;
            case "<=" -> c <= 0;
            case ">" -> c > 0;
            default -> c >= 0;
        };
    }

    /** Total order used by {@code sort}, {@code min}, {@code max}. */
    static int compare(Object a, Object b) {
        if (order(a, b, "<")) return -1;
        return order(b, a, "<") ? 1 : 0;
    }

    private static int compareStrings(String a, String b) {
        int i = 0, j = 0;
        while (i < a.length() && j < b.length()) {
            int ca = a.codePointAt(i), cb = b.codePointAt(j);
            if (ca != cb) return Integer.compare(ca, cb);
            i += Character.charCount(ca);
            j += Character.charCount(cb);
        }
        return Integer.compare(a.length() - i, b.length() - j);
    }

    private static int compareLists(List<?> a, List<?> b) {
        for (int i = 0; i < Math.min(a.size(), b.size()); i++) {
            if (!eq(a.get(i), b.get(i))) return compare(a.get(i), b.get(i));
        }
        return Integer.compare(a.size(), b.size());
    }

    /** Python's {@code item in container}. */
    static boolean contains(Object container, Object item) {
        return switch (container) {
            case null -> throw typeError("argument of type 'NoneType' is not iterable");
            case Undefined u -> false;
            case String s -> {
                if (item instanceof String sub) yield s.contains(sub);
                if (item instanceof Undefined u) throw u.error();
                throw typeError("'in <string>' requires string as left operand, not " + typeName(item));
            }
            case Map<?, ?> m -> {
                if (item instanceof Undefined u) throw u.error();
                if (m.containsKey(item)) yield true;
                for (Object k : m.keySet()) if (eq(k, item)) yield true;
                yield false;
            }
            case List<?> l -> {
                for (Object o : l) if (eq(o, item)) yield true;
                yield false;
            }
            default -> throw typeError("argument of type '" + typeName(container) + "' is not iterable");
        };
    }

    // ------------------------------------------------------------------ iteration and length

    /** The items {@code for x in v} visits: list items, dict keys, string characters; undefined gives none. */
    static List<Object> iterate(Object v) {
        return switch (v) {
            case null -> throw typeError("'NoneType' object is not iterable");
            case Undefined u -> List.of();
            case List<?> l -> new ArrayList<>(l);
            case Map<?, ?> m -> new ArrayList<>(m.keySet());
            case String s -> {
                List<Object> out = new ArrayList<>();
                s.codePoints().forEach(cp -> out.add(Character.toString(cp)));
                yield out;
            }
            default -> throw typeError("'" + typeName(v) + "' object is not iterable");
        };
    }

    /** Python's {@code len(v)}; undefined has length 0. */
    static long length(Object v) {
        return switch (v) {
            case null -> throw typeError("object of type 'NoneType' has no len()");
            case Undefined u -> 0;
            case String s -> s.codePointCount(0, s.length());
            case Collection<?> c -> c.size();
            case Map<?, ?> m -> m.size();
            case Namespace ns -> ns.attrs.size();
            default -> throw typeError("object of type '" + typeName(v) + "' has no len()");
        };
    }

    // ------------------------------------------------------------------ arithmetic

    /** A binary arithmetic operator: {@code + - * / // % **}. */
    static Object arith(String op, Object a, Object b) {
        if (a instanceof Undefined u) throw u.error();
        if (b instanceof Undefined u) throw u.error();
        if (isNumber(a) && isNumber(b)) return numeric(op, a, b);
        switch (op) {
            case "+" -> {
                if (a instanceof String sa && b instanceof String sb) return sa + sb;
                if (a instanceof List<?> la && b instanceof List<?> lb && (a instanceof PyTuple) == (b instanceof PyTuple)) {
                    List<Object> out = new ArrayList<>(la);
                    out.addAll(lb);
                    return a instanceof PyTuple ? new PyTuple(out) : out;
                }
                if (a instanceof String || a instanceof List) {
                    throw typeError("can only concatenate " + typeName(a) + " (not \"" + typeName(b) + "\") to " + typeName(a));
                }
            }
            case "*" -> {
                if (isIntLike(b) && (a instanceof String || a instanceof List)) return repeat(a, asLong(b));
                if (isIntLike(a) && (b instanceof String || b instanceof List)) return repeat(b, asLong(a));
            }
            case "%" -> {
                if (a instanceof String fmt) return PyStrings.percentFormat(fmt, b);
            }
            default -> { }
        }
        throw typeError("unsupported operand type(s) for " + op + ": '" + typeName(a) + "' and '" + typeName(b) + "'");
    }

    private static Object repeat(Object seq, long n) {
        if (seq instanceof String s) return n <= 0 ? "" : s.repeat((int) n);
        List<?> l = (List<?>) seq;
        List<Object> out = new ArrayList<>();
        for (long i = 0; i < n; i++) out.addAll(l);
        return seq instanceof PyTuple ? new PyTuple(out) : out;
    }

    private static Object numeric(String op, Object a, Object b) {
        boolean ints = isIntLike(a) && isIntLike(b);
        if (ints) {
            long x = asLong(a), y = asLong(b);
            switch (op) {
                case "+": return Math.addExact(x, y);
                case "-": return Math.subtractExact(x, y);
                case "*": return Math.multiplyExact(x, y);
                case "/":
                    if (y == 0) throw zeroDivision("division by zero");
                    return (double) x / (double) y;
                case "//":
                    if (y == 0) throw zeroDivision("integer division or modulo by zero");
                    return Math.floorDiv(x, y);
                case "%":
                    if (y == 0) throw zeroDivision("integer modulo by zero");
                    return Math.floorMod(x, y);
                case "**":
                    if (y >= 0) {
                        long r = 1;
                        for (long i = 0; i < y; i++) r = Math.multiplyExact(r, x);
                        return r;
                    }
                    return Math.pow(x, y);
                default: throw typeError("unknown operator " + op);
            }
        }
        double x = asDouble(a), y = asDouble(b);
        return switch (op) {
            case "+" -> x + y;
            case "-" -> x - y;
            case "*" -> x * y;
            case "/" -> {
                if (y == 0) throw zeroDivision("float division by zero");
                yield x / y;
            }
            case "//" -> {
                if (y == 0) throw zeroDivision("float floor division by zero");
                yield Math.floor(x / y);
            }
            case "%" -> {
                if (y == 0) throw zeroDivision("float modulo");
                double r = x % y;
                yield r != 0 && (r < 0) != (y < 0) ? r + y : r;
            }
            case "**" -> Math.pow(x, y);
            default -> throw typeError("unknown operator " + op);
        };
    }

    private static TemplateException zeroDivision(String msg) {
        return new TemplateException("ZeroDivisionError: " + msg);
    }

    /** Unary minus / plus. */
    static Object unary(String op, Object v) {
        if (v instanceof Undefined u) throw u.error();
        if (v instanceof Double d) return op.equals("-") ? -d : d;
        if (isIntLike(v)) return op.equals("-") ? -asLong(v) : asLong(v);
        throw typeError("bad operand type for unary " + op + ": '" + typeName(v) + "'");
    }

    // ------------------------------------------------------------------ JSON

    /**
     * Python's {@code json.dumps(v, ensure_ascii=..., indent=..., separators=..., sort_keys=...)}. {@code indent} is
     * null (single line), a number of spaces or a string; {@code itemSep}/{@code keySep} null mean Python's defaults.
     */
    static String toJson(Object v, Object indent, String itemSep, String keySep, boolean sortKeys, boolean ensureAscii) {
        String ind = indent == null ? null : indent instanceof String s ? s : " ".repeat((int) Math.max(0, asLong(indent)));
        if (itemSep == null) itemSep = ind == null ? ", " : ",";
        if (keySep == null) keySep = ": ";
        StringBuilder sb = new StringBuilder();
        writeJson(sb, v, ind, itemSep, keySep, sortKeys, ensureAscii, 0);
        return sb.toString();
    }

    private static void writeJson(StringBuilder sb, Object v, String ind, String itemSep, String keySep,
                                  boolean sortKeys, boolean ascii, int level) {
        switch (v) {
            case null -> sb.append("null");
            case Boolean b -> sb.append(b ? "true" : "false");
            case Long l -> sb.append(l);
            case Double d -> sb.append(Double.isNaN(d) ? "NaN" : Double.isInfinite(d) ? (d > 0 ? "Infinity" : "-Infinity") : formatFloat(d));
            case String s -> jsonString(sb, s, ascii);
            case List<?> l -> {
                if (l.isEmpty()) {
                    sb.append("[]");
                    return;
                }
                sb.append('[');
                for (int i = 0; i < l.size(); i++) {
                    if (i > 0) sb.append(itemSep);
                    newline(sb, ind, level + 1);
                    writeJson(sb, l.get(i), ind, itemSep, keySep, sortKeys, ascii, level + 1);
                }
                newline(sb, ind, level);
                sb.append(']');
            }
            case Map<?, ?> m -> {
                if (m.isEmpty()) {
                    sb.append("{}");
                    return;
                }
                List<Map.Entry<String, Object>> entries = new ArrayList<>();
                for (Map.Entry<?, ?> e : m.entrySet()) entries.add(Map.entry(jsonKey(e.getKey()), nullSafe(e.getValue())));
                if (sortKeys) entries.sort((x, y) -> compareStrings(x.getKey(), y.getKey()));
                sb.append('{');
                boolean first = true;
                for (Map.Entry<String, Object> e : entries) {
                    if (!first) sb.append(itemSep);
                    first = false;
                    newline(sb, ind, level + 1);
                    jsonString(sb, e.getKey(), ascii);
                    sb.append(keySep);
                    writeJson(sb, unNull(e.getValue()), ind, itemSep, keySep, sortKeys, ascii, level + 1);
                }
                newline(sb, ind, level);
                sb.append('}');
            }
            default -> throw typeError("Object of type " + typeName(v) + " is not JSON serializable");
        }
    }

    private static final Object NULL = new Object();

    private static Object nullSafe(Object v) {
        return v == null ? NULL : v;
    }

    private static Object unNull(Object v) {
        return v == NULL ? null : v;
    }

    private static String jsonKey(Object k) {
        return switch (k) {
            case String s -> s;
            case null -> "null";
            case Boolean b -> b ? "true" : "false";
            case Long l -> l.toString();
            case Double d -> formatFloat(d);
            default -> throw typeError("keys must be str, int, float, bool or None, not " + typeName(k));
        };
    }

    private static void newline(StringBuilder sb, String ind, int level) {
        if (ind != null) sb.append('\n').append(ind.repeat(level));
    }

    private static void jsonString(StringBuilder sb, String s, boolean ascii) {
        sb.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> sb.append("\\\"");
                case '\\' -> sb.append("\\\\");
                case '\n' -> sb.append("\\n");
                case '\r' -> sb.append("\\r");
                case '\t' -> sb.append("\\t");
                case '\b' -> sb.append("\\b");
                case '\f' -> sb.append("\\f");
                default -> {
                    if (c < 0x20 || (ascii && c > 0x7e)) sb.append(String.format("\\u%04x", (int) c));
                    else sb.append(c);
                }
            }
        }
        sb.append('"');
    }

    /** An iterator-free view helper: the Python {@code list(v)} of an iterable value. */
    static List<Object> toList(Object v) {
        return iterate(v);
    }

    /** Iterates a map's entries as Python {@code (key, value)} tuples. */
    static List<Object> items(Map<?, ?> m) {
        List<Object> out = new ArrayList<>(m.size());
        for (Iterator<? extends Map.Entry<?, ?>> it = m.entrySet().iterator(); it.hasNext(); ) {
            Map.Entry<?, ?> e = it.next();
            out.add(new PyTuple(e.getKey(), e.getValue()));
        }
        return out;
    }
}
