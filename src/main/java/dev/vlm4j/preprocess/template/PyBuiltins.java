package dev.vlm4j.preprocess.template;

import java.math.BigDecimal;
import java.math.RoundingMode;
import java.time.ZonedDateTime;
import java.time.format.TextStyle;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;

import static dev.vlm4j.preprocess.template.PyMethods.arg;

/**
 * Jinja2's built-in filters and tests, transformers' {@code tojson} filter, and the globals chat templates use
 * ({@code range}, {@code namespace}, {@code dict}, {@code raise_exception}, {@code strftime_now}).
 */
final class PyBuiltins {
    private PyBuiltins() {}

    /** The global functions every template sees. */
    static Map<String, Object> globals() {
        Map<String, Object> g = new LinkedHashMap<>();
        g.put("range", (PyCallable) PyBuiltins::range);
        g.put("namespace", (PyCallable) (args, kw) -> {
            Namespace ns = new Namespace();
            for (Object a : args) {
                if (a instanceof Map<?, ?> m) m.forEach((k, v) -> ns.attrs.put(PyValues.str(k), v));
            }
            ns.attrs.putAll(kw);
            return ns;
        });
        g.put("dict", (PyCallable) (args, kw) -> {
            Map<Object, Object> d = new LinkedHashMap<>();
            if (!args.isEmpty() && args.getFirst() instanceof Map<?, ?> m) d.putAll(m);
            d.putAll(kw);
            return d;
        });
        g.put("raise_exception", (PyCallable) (args, kw) -> {
            throw new TemplateException("TemplateError: " + PyValues.str(arg(args, kw, 0, "message", "")));
        });
        g.put("strftime_now", (PyCallable) (args, kw) -> strftime(ZonedDateTime.now(), PyValues.str(arg(args, kw, 0, "format", ""))));
        return g;
    }

    private static Object range(List<Object> args, Map<String, Object> kw) {
        long start = 0, stop, step = 1;
        if (args.size() == 1) {
            stop = PyValues.asLong(args.get(0));
        } else {
            start = PyValues.asLong(args.get(0));
            stop = PyValues.asLong(args.get(1));
            if (args.size() > 2) step = PyValues.asLong(args.get(2));
        }
        if (step == 0) throw new TemplateException("ValueError: range() arg 3 must not be zero");
        List<Object> out = new ArrayList<>();
        for (long i = start; step > 0 ? i < stop : i > stop; i += step) {
            if (out.size() >= 100_000) throw new TemplateException("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
            out.add(i);
        }
        return out;
    }

    // ------------------------------------------------------------------ filters

    /** Applies filter {@code name} to {@code v}. */
    static Object filter(String name, Object v, List<Object> args, Map<String, Object> kw) {
        switch (name) {
            case "default", "d" -> {
                boolean bool = PyValues.truthy(arg(args, kw, 1, "boolean", false));
                return v instanceof Undefined || (bool && !PyValues.truthy(v)) ? arg(args, kw, 0, "default_value", "") : v;
            }
            case "length", "count" -> { return PyValues.length(v); }
            case "string" -> { return PyValues.str(v); }
            case "safe" -> { return v; }
            case "e", "escape" -> {
                return PyValues.str(v).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
                        .replace("\"", "&#34;").replace("'", "&#39;");
            }
            case "upper" -> { return PyValues.str(v).toUpperCase(Locale.ROOT); }
            case "lower" -> { return PyValues.str(v).toLowerCase(Locale.ROOT); }
            case "capitalize" -> { return PyStrings.capitalize(PyValues.str(v)); }
            case "title" -> {
                StringBuilder sb = new StringBuilder();
                for (String part : PyValues.str(v).split("(?<=[-\\s(\\{\\[<])(?=[^-\\s(\\{\\[<])|(?<=[^-\\s(\\{\\[<])(?=[-\\s(\\{\\[<])")) {
                    if (!part.isEmpty()) sb.append(PyStrings.capitalize(part));
                }
                return sb.toString();
            }
            case "trim" -> {
                Object chars = arg(args, kw, 0, "chars", null);
                return PyStrings.strip(PyValues.str(v), chars == null ? null : PyValues.str(chars), true, true);
            }
            case "replace" -> {
                return PyStrings.replace(PyValues.str(v), PyValues.str(arg(args, kw, 0, "old", "")),
                        PyValues.str(arg(args, kw, 1, "new", "")), countArg(arg(args, kw, 2, "count", null)));
            }
            case "int" -> { return toInt(v, arg(args, kw, 0, "default", 0L), PyValues.asLong(arg(args, kw, 1, "base", 10L))); }
            case "float" -> { return toFloat(v, arg(args, kw, 0, "default", 0.0)); }
            case "abs" -> {
                if (v instanceof Double d) return Math.abs(d);
                return Math.abs(PyValues.asLong(v));
            }
            case "round" -> { return round(v, PyValues.asLong(arg(args, kw, 0, "precision", 0L)), PyValues.str(arg(args, kw, 1, "method", "common"))); }
            case "list" -> { return PyValues.iterate(v); }
            case "first" -> {
                List<Object> l = PyValues.iterate(v);
                return l.isEmpty() ? Undefined.plain() : l.getFirst();
            }
            case "last" -> {
                List<Object> l = PyValues.iterate(v);
                return l.isEmpty() ? Undefined.plain() : l.getLast();
            }
            case "reverse" -> {
                if (v instanceof String s) return new StringBuilder(s).reverse().toString();
                List<Object> l = PyValues.iterate(v);
                Collections.reverse(l);
                return l;
            }
            case "join" -> {
                String sep = PyValues.str(arg(args, kw, 0, "d", ""));
                Object attr = arg(args, kw, 1, "attribute", null);
                StringBuilder sb = new StringBuilder();
                List<Object> l = PyValues.iterate(v);
                for (int i = 0; i < l.size(); i++) {
                    if (i > 0) sb.append(sep);
                    sb.append(PyValues.str(attr == null ? l.get(i) : attrPath(l.get(i), attr)));
                }
                return sb.toString();
            }
            case "items" -> {
                if (v instanceof Undefined) return List.of();
                if (!(v instanceof Map<?, ?> m)) throw PyValues.typeError("Can only get item pairs from a mapping.");
                return PyValues.items(m);
            }
            case "tojson" -> {
                Object seps = arg(args, kw, 2, "separators", null);
                String itemSep = null, keySep = null;
                if (seps instanceof List<?> l && l.size() == 2) {
                    itemSep = PyValues.str(l.get(0));
                    keySep = PyValues.str(l.get(1));
                }
                if (v instanceof Undefined) throw PyValues.typeError("Object of type Undefined is not JSON serializable");
                return PyValues.toJson(v, arg(args, kw, 1, "indent", null), itemSep, keySep,
                        PyValues.truthy(arg(args, kw, 3, "sort_keys", false)), PyValues.truthy(arg(args, kw, 0, "ensure_ascii", false)));
            }
            case "selectattr", "rejectattr" -> {
                List<Object> out = new ArrayList<>();
                Object attr = arg(args, kw, 0, "attribute", null);
                for (Object item : PyValues.iterate(v)) {
                    Object a = attrPath(item, attr);
                    boolean ok = args.size() < 2 ? PyValues.truthy(a)
                            : test(PyValues.str(args.get(1)), a, args.subList(2, args.size()), Map.of());
                    if (ok == name.equals("selectattr")) out.add(item);
                }
                return out;
            }
            case "select", "reject" -> {
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(v)) {
                    boolean ok = args.isEmpty() ? PyValues.truthy(item)
                            : test(PyValues.str(args.getFirst()), item, args.subList(1, args.size()), Map.of());
                    if (ok == name.equals("select")) out.add(item);
                }
                return out;
            }
            case "map" -> {
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(v)) {
                    if (kw.containsKey("attribute")) {
                        Object a = attrPath(item, kw.get("attribute"));
                        out.add(a instanceof Undefined && kw.containsKey("default") ? kw.get("default") : a);
                    } else {
                        out.add(filter(PyValues.str(args.getFirst()), item, args.subList(1, args.size()), Map.of()));
                    }
                }
                return out;
            }
            case "attr" -> { return PyMethods.attribute(v, PyValues.str(arg(args, kw, 0, "name", ""))); }
            case "unique" -> {
                List<Object> out = new ArrayList<>();
                for (Object item : PyValues.iterate(v)) {
                    boolean seen = false;
                    for (Object o : out) seen |= PyValues.eq(sortKey(o, false), sortKey(item, false));
                    if (!seen) out.add(item);
                }
                return out;
            }
            case "sort" -> {
                boolean reverse = PyValues.truthy(arg(args, kw, 0, "reverse", false));
                boolean cs = PyValues.truthy(arg(args, kw, 1, "case_sensitive", false));
                Object attr = arg(args, kw, 2, "attribute", null);
                List<Object> l = PyValues.iterate(v);
                l.sort((a, b) -> PyValues.compare(sortKey(attr == null ? a : attrPath(a, attr), cs),
                        sortKey(attr == null ? b : attrPath(b, attr), cs)));
                if (reverse) Collections.reverse(l);
                return l;
            }
            case "min", "max" -> {
                List<Object> l = PyValues.iterate(v);
                if (l.isEmpty()) return Undefined.plain();
                boolean cs = PyValues.truthy(arg(args, kw, 0, "case_sensitive", false));
                Object best = l.getFirst();
                for (Object o : l) {
                    int c = PyValues.compare(sortKey(o, cs), sortKey(best, cs));
                    if (name.equals("min") ? c < 0 : c > 0) best = o;
                }
                return best;
            }
            case "sum" -> {
                Object attr = arg(args, kw, 0, "attribute", null);
                Object total = arg(args, kw, 1, "start", 0L);
                for (Object o : PyValues.iterate(v)) total = PyValues.arith("+", total, attr == null ? o : attrPath(o, attr));
                return total;
            }
            case "indent" -> {
                Object w = arg(args, kw, 0, "width", 4L);
                String pad = w instanceof String s ? s : " ".repeat((int) PyValues.asLong(w));
                boolean first = PyValues.truthy(arg(args, kw, 1, "first", false));
                boolean blank = PyValues.truthy(arg(args, kw, 2, "blank", false));
                String s = PyValues.str(v) + "\n";
                List<Object> lines = PyStrings.split(s, "\n", -1);
                lines.removeLast();
                StringBuilder sb = new StringBuilder();
                for (int i = 0; i < lines.size(); i++) {
                    String line = (String) lines.get(i);
                    if (i > 0) sb.append('\n');
                    if ((i > 0 || first) && (blank || !line.isEmpty())) sb.append(pad);
                    sb.append(line);
                }
                return sb.toString();
            }
            case "wordcount" -> { return (long) PyStrings.split(PyValues.str(v), null, -1).size(); }
            case "format" -> {
                return PyStrings.percentFormat(PyValues.str(v), kw.isEmpty() ? new PyTuple(args) : kw);
            }
            case "dictsort" -> {
                if (!(v instanceof Map<?, ?> m)) throw PyValues.typeError("You can only sort by either \"key\" or \"value\"");
                List<Object> l = PyValues.items(m);
                boolean byValue = "value".equals(arg(args, kw, 1, "by", "key"));
                boolean cs = PyValues.truthy(arg(args, kw, 0, "case_sensitive", false));
                l.sort((a, b) -> PyValues.compare(sortKey(((List<?>) a).get(byValue ? 1 : 0), cs), sortKey(((List<?>) b).get(byValue ? 1 : 0), cs)));
                if (PyValues.truthy(arg(args, kw, 2, "reverse", false))) Collections.reverse(l);
                return l;
            }
            default -> throw new TemplateException("TemplateAssertionError: No filter named '" + name + "'.");
        }
    }

    private static long countArg(Object c) {
        return c == null ? -1 : PyValues.asLong(c);
    }

    private static Object sortKey(Object v, boolean caseSensitive) {
        return !caseSensitive && v instanceof String s ? s.toLowerCase(Locale.ROOT) : v;
    }

    /** Jinja2's {@code make_attrgetter}: a dotted path of attributes / integer indexes. */
    private static Object attrPath(Object item, Object path) {
        if (path instanceof Long l) return PyMethods.item(item, l);
        Object cur = item;
        for (String part : PyValues.str(path).split("\\.")) {
            cur = part.chars().allMatch(Character::isDigit) && !part.isEmpty()
                    ? PyMethods.item(cur, Long.parseLong(part)) : PyMethods.item(cur, part);
        }
        return cur;
    }

    private static Object toInt(Object v, Object def, long base) {
        if (v instanceof Undefined u) throw u.error();
        if (v instanceof Boolean || v instanceof Long) return PyValues.asLong(v);
        if (v instanceof Double d) return (long) (double) d;
        if (v instanceof String s) {
            String t = PyStrings.strip(s, null, true, true).replace("_", "");
            try {
                if (base == 16 && t.toLowerCase(Locale.ROOT).startsWith("0x")) t = t.substring(2);
                return Long.parseLong(t, (int) base);
            } catch (NumberFormatException e) {
                try {
                    return (long) Double.parseDouble(t);
                } catch (NumberFormatException e2) {
                    return def;
                }
            }
        }
        return def;
    }

    private static Object toFloat(Object v, Object def) {
        if (v instanceof Undefined u) throw u.error();
        if (v instanceof Boolean || v instanceof Long || v instanceof Double) return PyValues.asDouble(v);
        if (v instanceof String s) {
            try {
                return Double.parseDouble(PyStrings.strip(s, null, true, true));
            } catch (NumberFormatException e) {
                return def;
            }
        }
        return def;
    }

    private static Object round(Object v, long precision, String method) {
        if (v instanceof Long || v instanceof Boolean) {
            if (method.equals("common")) return PyValues.asLong(v);
            return PyValues.asDouble(v);
        }
        double d = PyValues.asDouble(v);
        RoundingMode mode = switch (method) {
            case "ceil" -> RoundingMode.CEILING;
            case "floor" -> RoundingMode.FLOOR;
            default -> RoundingMode.HALF_EVEN;
        };
        if (Double.isNaN(d) || Double.isInfinite(d)) return d;
        return new BigDecimal(d).setScale((int) precision, mode).doubleValue();
    }

    // ------------------------------------------------------------------ tests

    /** Evaluates test {@code name} ({@code v is name(args)}). */
    static boolean test(String name, Object v, List<Object> args, Map<String, Object> kw) {
        Object other = arg(args, kw, 0, "other", null);
        return switch (name) {
            case "defined" -> !(v instanceof Undefined);
            case "undefined" -> v instanceof Undefined;
            case "none" -> v == null;
            case "string" -> v instanceof String;
            case "mapping" -> v instanceof Map;
            case "iterable" -> v instanceof String || v instanceof List || v instanceof Map || v instanceof Undefined;
            case "sequence" -> v instanceof String || v instanceof List || v instanceof Map || v instanceof Undefined;
            case "number" -> v instanceof Long || v instanceof Double || v instanceof Boolean;
            case "integer" -> v instanceof Long;
            case "float" -> v instanceof Double;
            case "boolean" -> v instanceof Boolean;
            case "true" -> Boolean.TRUE.equals(v);
            case "false" -> Boolean.FALSE.equals(v);
            case "callable" -> v instanceof PyCallable;
            case "odd" -> PyValues.asLong(v) % 2 != 0;
            case "even" -> PyValues.asLong(v) % 2 == 0;
            case "divisibleby" -> PyValues.asLong(v) % PyValues.asLong(arg(args, kw, 0, "num", 1L)) == 0;
            case "eq", "equalto", "==" -> PyValues.eq(v, other);
            case "ne", "!=" -> !PyValues.eq(v, other);
            case "lt", "lessthan", "<" -> PyValues.order(v, other, "<");
            case "le", "<=" -> PyValues.order(v, other, "<=");
            case "gt", "greaterthan", ">" -> PyValues.order(v, other, ">");
            case "ge", ">=" -> PyValues.order(v, other, ">=");
            case "in" -> PyValues.contains(arg(args, kw, 0, "seq", null), v);
            case "sameas" -> v == other || (v instanceof Boolean && v.equals(other)) || (v == null && other == null);
            case "lower" -> PyValues.str(v).equals(PyValues.str(v).toLowerCase(Locale.ROOT));
            case "upper" -> PyValues.str(v).equals(PyValues.str(v).toUpperCase(Locale.ROOT));
            case "escaped" -> false;
            default -> throw new TemplateException("TemplateAssertionError: No test named '" + name + "'.");
        };
    }

    // ------------------------------------------------------------------ strftime

    /** Python {@code datetime.strftime} for the common directives. */
    static String strftime(ZonedDateTime t, String fmt) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < fmt.length(); i++) {
            char c = fmt.charAt(i);
            if (c != '%' || i + 1 >= fmt.length()) {
                sb.append(c);
                continue;
            }
            char d = fmt.charAt(++i);
            switch (d) {
                case 'Y' -> sb.append(t.getYear());
                case 'y' -> sb.append(String.format("%02d", t.getYear() % 100));
                case 'm' -> sb.append(String.format("%02d", t.getMonthValue()));
                case 'd' -> sb.append(String.format("%02d", t.getDayOfMonth()));
                case '-' -> {
                    char e = i + 1 < fmt.length() ? fmt.charAt(++i) : 'd';
                    sb.append(switch (e) {
                        case 'm' -> t.getMonthValue();
                        case 'H' -> t.getHour();
                        case 'I' -> (t.getHour() + 11) % 12 + 1;
                        case 'M' -> t.getMinute();
                        default -> t.getDayOfMonth();
                    });
                }
                case 'H' -> sb.append(String.format("%02d", t.getHour()));
                case 'I' -> sb.append(String.format("%02d", (t.getHour() + 11) % 12 + 1));
                case 'M' -> sb.append(String.format("%02d", t.getMinute()));
                case 'S' -> sb.append(String.format("%02d", t.getSecond()));
                case 'p' -> sb.append(t.getHour() < 12 ? "AM" : "PM");
                case 'b' -> sb.append(t.getMonth().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> sb.append(t.getMonth().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> sb.append(t.getDayOfWeek().getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'j' -> sb.append(String.format("%03d", t.getDayOfYear()));
                case '%' -> sb.append('%');
                default -> sb.append('%').append(d);
            }
        }
        return sb.toString();
    }
}
