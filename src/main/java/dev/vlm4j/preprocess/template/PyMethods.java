package dev.vlm4j.preprocess.template;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * Attribute and item access with Jinja2's rules ({@code a.b} tries the Python attribute first and then the item,
 * {@code a['b']} the other way round) and the Python methods of {@code str}, {@code dict} and {@code list} that
 * templates call. Mutating methods are refused like transformers' immutable sandbox does.
 */
final class PyMethods {
    private PyMethods() {}

    private static final Set<String> DICT_METHODS = Set.of("items", "keys", "values", "get", "copy");
    private static final Set<String> DICT_UNSAFE = Set.of("pop", "popitem", "setdefault", "update", "clear");
    private static final Set<String> LIST_METHODS = Set.of("index", "count", "copy");
    private static final Set<String> LIST_UNSAFE = Set.of("append", "extend", "insert", "pop", "remove", "sort", "reverse", "clear");
    private static final Set<String> STR_METHODS = Set.of("startswith", "endswith", "split", "rsplit", "splitlines",
            "strip", "lstrip", "rstrip", "replace", "upper", "lower", "title", "capitalize", "find", "rfind", "index",
            "rindex", "count", "format", "join", "isdigit", "isalpha", "isalnum", "isspace", "isupper", "islower",
            "removeprefix", "removesuffix", "swapcase", "zfill", "ljust", "rjust", "center");

    /** {@code obj.name}. */
    static Object attribute(Object obj, String name) {
        switch (obj) {
            case null -> {
                return Undefined.attribute(null, name);
            }
            case Undefined u -> throw u.error();
            case Namespace ns -> {
                return ns.attrs.containsKey(name) ? ns.attrs.get(name) : Undefined.attribute(obj, name);
            }
            case LoopContext lc -> {
                return lc.attribute(name);
            }
            case Map<?, ?> m -> {
                if (DICT_METHODS.contains(name)) return dictMethod(m, name);
                if (DICT_UNSAFE.contains(name)) return Undefined.unsafe(obj, name);
                return m.containsKey(name) ? m.get(name) : Undefined.attribute(obj, name);
            }
            case String s -> {
                if (STR_METHODS.contains(name)) return (PyCallable) (args, kw) -> PyStrings.call(s, name, args, kw);
                return Undefined.attribute(obj, name);
            }
            case List<?> l -> {
                if (LIST_METHODS.contains(name)) return listMethod(l, name);
                if (LIST_UNSAFE.contains(name)) return Undefined.unsafe(obj, name);
                return Undefined.attribute(obj, name);
            }
            default -> {
                return Undefined.attribute(obj, name);
            }
        }
    }

    /** {@code obj[key]}. */
    static Object item(Object obj, Object key) {
        if (obj instanceof Undefined u) throw u.error();
        if (key instanceof Undefined u) throw u.error();
        switch (obj) {
            case Map<?, ?> m -> {
                if (m.containsKey(key)) return m.get(key);
                if (key instanceof Long || key instanceof Double || key instanceof Boolean) {
                    for (Map.Entry<?, ?> e : m.entrySet()) if (PyValues.eq(e.getKey(), key)) return e.getValue();
                }
            }
            case List<?> l when key instanceof Long || key instanceof Boolean -> {
                long i = PyValues.asLong(key);
                if (i < 0) i += l.size();
                if (i >= 0 && i < l.size()) return l.get((int) i);
                return Undefined.element(obj, key);
            }
            case null -> {
                return Undefined.attribute(null, PyValues.str(key));
            }
            case String s when key instanceof Long || key instanceof Boolean -> {
                int[] cps = s.codePoints().toArray();
                long i = PyValues.asLong(key);
                if (i < 0) i += cps.length;
                if (i >= 0 && i < cps.length) return Character.toString(cps[(int) i]);
                return Undefined.element(obj, key);
            }
            default -> { }
        }
        if (key instanceof String name) return attribute(obj, name);
        return Undefined.element(obj, key);
    }

    /** {@code obj[start:stop:step]} for lists, tuples and strings. */
    static Object slice(Object obj, Object start, Object stop, Object step) {
        if (obj instanceof Undefined u) throw u.error();
        long st = step == null ? 1 : PyValues.asLong(checkIndex(step));
        if (st == 0) throw new TemplateException("ValueError: slice step cannot be zero");
        List<?> seq;
        int[] cps = null;
        if (obj instanceof String s) {
            cps = s.codePoints().toArray();
            seq = null;
        } else if (obj instanceof List<?> l) {
            seq = l;
        } else {
            throw PyValues.typeError("'" + PyValues.typeName(obj) + "' object is not subscriptable");
        }
        int n = cps != null ? cps.length : seq.size();
        long lo, hi;
        if (st > 0) {
            lo = start == null ? 0 : clamp(PyValues.asLong(checkIndex(start)), n, 0, n);
            hi = stop == null ? n : clamp(PyValues.asLong(checkIndex(stop)), n, 0, n);
        } else {
            lo = start == null ? n - 1 : clamp(PyValues.asLong(checkIndex(start)), n, -1, n - 1);
            hi = stop == null ? -1 : clamp(PyValues.asLong(checkIndex(stop)), n, -1, n - 1);
        }
        List<Object> out = new ArrayList<>();
        StringBuilder sb = new StringBuilder();
        for (long i = lo; st > 0 ? i < hi : i > hi; i += st) {
            if (cps != null) sb.appendCodePoint(cps[(int) i]);
            else out.add(seq.get((int) i));
        }
        if (cps != null) return sb.toString();
        return obj instanceof PyTuple ? new PyTuple(out) : out;
    }

    private static Object checkIndex(Object v) {
        if (v instanceof Long || v instanceof Boolean) return v;
        if (v instanceof Undefined u) throw u.error();
        throw PyValues.typeError("slice indices must be integers or None or have an __index__ method");
    }

    private static long clamp(long i, int n, long min, long max) {
        if (i < 0) i += n;
        return Math.max(min, Math.min(max, i));
    }

    private static PyCallable dictMethod(Map<?, ?> m, String name) {
        return (args, kw) -> switch (name) {
            case "items" -> PyValues.items(m);
            case "keys" -> new ArrayList<Object>(m.keySet());
            case "values" -> new ArrayList<Object>(m.values());
            case "copy" -> new LinkedHashMap<Object, Object>(m);
            default -> {
                Object key = arg(args, kw, 0, "key", null);
                yield m.containsKey(key) ? m.get(key) : arg(args, kw, 1, "default", null);
            }
        };
    }

    private static PyCallable listMethod(List<?> l, String name) {
        return (args, kw) -> switch (name) {
            case "count" -> {
                long c = 0;
                for (Object o : l) if (PyValues.eq(o, args.getFirst())) c++;
                yield c;
            }
            case "copy" -> new ArrayList<Object>(l);
            default -> {
                for (int i = 0; i < l.size(); i++) if (PyValues.eq(l.get(i), args.getFirst())) yield (long) i;
                throw new TemplateException("ValueError: " + PyValues.repr(args.getFirst()) + " is not in list");
            }
        };
    }

    /** Argument {@code index} / keyword {@code name} of a call, or {@code def} when absent. */
    static Object arg(List<Object> args, Map<String, Object> kw, int index, String name, Object def) {
        if (index >= 0 && index < args.size()) return args.get(index);
        if (kw.containsKey(name)) return kw.get(name);
        return def;
    }
}
