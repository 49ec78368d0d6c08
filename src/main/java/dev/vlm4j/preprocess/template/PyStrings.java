package dev.vlm4j.preprocess.template;

import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;

import static dev.vlm4j.preprocess.template.PyMethods.arg;

/** Python {@code str} methods and string formatting ({@code %} and {@code str.format}) for templates. */
final class PyStrings {
    private PyStrings() {}

    /** Calls the {@code str} method {@code name} on {@code s}. */
    static Object call(String s, String name, List<Object> args, Map<String, Object> kw) {
        return switch (name) {
            case "startswith", "endswith" -> {
                Object p = arg(args, kw, 0, "prefix", null);
                String sub = sliceArgs(s, args);
                List<Object> options = p instanceof PyTuple t ? t : List.of(str(p, name));
                boolean r = false;
                for (Object o : options) {
                    String x = str(o, name);
                    r |= name.equals("startswith") ? sub.startsWith(x) : sub.endsWith(x);
                }
                yield r;
            }
            case "split", "rsplit" -> {
                Object sep = arg(args, kw, 0, "sep", null);
                long max = PyValues.asLong(arg(args, kw, 1, "maxsplit", -1L));
                yield name.equals("split") ? split(s, sep == null ? null : str(sep, name), max)
                        : rsplit(s, sep == null ? null : str(sep, name), max);
            }
            case "splitlines" -> {
                List<Object> out = new ArrayList<>();
                boolean keep = PyValues.truthy(arg(args, kw, 0, "keepends", false));
                int start = 0;
                for (int i = 0; i < s.length(); i++) {
                    char c = s.charAt(i);
                    if (c == '\n' || c == '\r' || c == '\u000b' || c == '\u000c' || (c >= '\u001c' && c <= '\u001e')
                            || c == '\u0085' || c == '\u2028' || c == '\u2029') {
                        int end = i;
                        if (c == '\r' && i + 1 < s.length() && s.charAt(i + 1) == '\n') i++;
                        out.add(s.substring(start, keep ? i + 1 : end));
                        start = i + 1;
                    }
                }
                if (start < s.length()) out.add(s.substring(start));
                yield out;
            }
            case "strip", "lstrip", "rstrip" -> {
                Object chars = arg(args, kw, 0, "chars", null);
                yield strip(s, chars == null ? null : str(chars, name), !name.equals("rstrip"), !name.equals("lstrip"));
            }
            case "replace" -> replace(s, str(arg(args, kw, 0, "old", null), name), str(arg(args, kw, 1, "new", null), name),
                    PyValues.asLong(arg(args, kw, 2, "count", -1L)));
            case "upper" -> s.toUpperCase(java.util.Locale.ROOT);
            case "lower" -> s.toLowerCase(java.util.Locale.ROOT);
            case "swapcase" -> {
                StringBuilder sb = new StringBuilder();
                s.codePoints().forEach(cp -> sb.appendCodePoint(Character.isUpperCase(cp) ? Character.toLowerCase(cp)
                        : Character.isLowerCase(cp) ? Character.toUpperCase(cp) : cp));
                yield sb.toString();
            }
            case "title" -> title(s);
            case "capitalize" -> capitalize(s);
            case "find", "rfind", "index", "rindex" -> {
                String sub = str(arg(args, kw, 0, "sub", null), name);
                int offset = sliceStart(s, args);
                String hay = sliceArgs(s, args);
                int i = name.startsWith("r") ? hay.lastIndexOf(sub) : hay.indexOf(sub);
                if (i < 0 && name.endsWith("index")) throw new TemplateException("ValueError: substring not found");
                yield i < 0 ? -1L : (long) (s.codePointCount(0, offset) + hay.codePointCount(0, i));
            }
            case "count" -> {
                String sub = str(arg(args, kw, 0, "sub", null), name);
                String hay = sliceArgs(s, args);
                if (sub.isEmpty()) yield (long) hay.codePointCount(0, hay.length()) + 1;
                long c = 0;
                for (int i = hay.indexOf(sub); i >= 0; i = hay.indexOf(sub, i + sub.length())) c++;
                yield c;
            }
            case "format" -> format(s, args, kw);
            case "join" -> {
                StringBuilder sb = new StringBuilder();
                List<Object> items = PyValues.iterate(arg(args, kw, 0, "iterable", null));
                for (int i = 0; i < items.size(); i++) {
                    if (i > 0) sb.append(s);
                    if (!(items.get(i) instanceof String x)) {
                        throw PyValues.typeError("sequence item " + i + ": expected str instance, "
                                + PyValues.typeName(items.get(i)) + " found");
                    }
                    sb.append(x);
                }
                yield sb.toString();
            }
            case "isdigit" -> !s.isEmpty() && s.codePoints().allMatch(Character::isDigit);
            case "isalpha" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetter);
            case "isalnum" -> !s.isEmpty() && s.codePoints().allMatch(Character::isLetterOrDigit);
            case "isspace" -> !s.isEmpty() && s.chars().allMatch(c -> JinjaLexer.isSpace((char) c));
            case "isupper" -> s.codePoints().anyMatch(Character::isUpperCase) && s.codePoints().noneMatch(Character::isLowerCase);
            case "islower" -> s.codePoints().anyMatch(Character::isLowerCase) && s.codePoints().noneMatch(Character::isUpperCase);
            case "removeprefix" -> {
                String p = str(arg(args, kw, 0, "prefix", null), name);
                yield s.startsWith(p) ? s.substring(p.length()) : s;
            }
            case "removesuffix" -> {
                String p = str(arg(args, kw, 0, "suffix", null), name);
                yield s.endsWith(p) && !p.isEmpty() ? s.substring(0, s.length() - p.length()) : s;
            }
            case "zfill", "ljust", "rjust", "center" -> {
                int width = (int) PyValues.asLong(arg(args, kw, 0, "width", 0L));
                String fill = name.equals("zfill") ? "0" : str(arg(args, kw, 1, "fillchar", " "), name);
                int pad = Math.max(0, width - s.codePointCount(0, s.length()));
                yield switch (name) {
                    case "ljust" -> s + fill.repeat(pad);
                    case "rjust" -> fill.repeat(pad) + s;
                    case "center" -> {
                        int left = pad / 2 + (pad & width & 1);
                        yield fill.repeat(left) + s + fill.repeat(pad - left);
                    }
                    default -> !s.isEmpty() && (s.charAt(0) == '-' || s.charAt(0) == '+')
                            ? s.charAt(0) + "0".repeat(pad) + s.substring(1) : "0".repeat(pad) + s;
                };
            }
            default -> throw new TemplateException("UndefinedError: 'str object' has no attribute '" + name + "'");
        };
    }

    private static String str(Object v, String method) {
        if (v instanceof String s) return s;
        if (v instanceof Undefined u) throw u.error();
        throw PyValues.typeError(method + "() argument must be str, not " + PyValues.typeName(v));
    }

    private static int sliceStart(String s, List<Object> args) {
        if (args.size() < 2 || args.get(1) == null) return 0;
        Object sliced = PyMethods.slice(s, args.get(1), null, null);
        return s.length() - ((String) sliced).length();
    }

    /** {@code s[start:end]} from a method's optional 2nd and 3rd arguments. */
    private static String sliceArgs(String s, List<Object> args) {
        if (args.size() < 2) return s;
        return (String) PyMethods.slice(s, args.get(1), args.size() > 2 ? args.get(2) : null, null);
    }

    /** Python {@code str.strip(chars)} with {@code chars == null} meaning whitespace. */
    static String strip(String s, String chars, boolean left, boolean right) {
        int b = 0, e = s.length();
        if (left) while (b < e && stripped(s.charAt(b), chars)) b++;
        if (right) while (e > b && stripped(s.charAt(e - 1), chars)) e--;
        return s.substring(b, e);
    }

    private static boolean stripped(char c, String chars) {
        return chars == null ? JinjaLexer.isSpace(c) : chars.indexOf(c) >= 0;
    }

    /** Python {@code str.split(sep, maxsplit)}. */
    static List<Object> split(String s, String sep, long max) {
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            int i = 0, n = s.length();
            while (true) {
                while (i < n && JinjaLexer.isSpace(s.charAt(i))) i++;
                if (i >= n) break;
                if (max >= 0 && out.size() >= max) {
                    out.add(strip(s.substring(i), null, false, true));
                    break;
                }
                int j = i;
                while (j < n && !JinjaLexer.isSpace(s.charAt(j))) j++;
                out.add(s.substring(i, j));
                i = j;
            }
            return out;
        }
        if (sep.isEmpty()) throw new TemplateException("ValueError: empty separator");
        int start = 0;
        while (max < 0 || out.size() < max) {
            int i = s.indexOf(sep, start);
            if (i < 0) break;
            out.add(s.substring(start, i));
            start = i + sep.length();
        }
        out.add(s.substring(start));
        return out;
    }

    /** Python {@code str.rsplit(sep, maxsplit)}. */
    static List<Object> rsplit(String s, String sep, long max) {
        if (max < 0) return split(s, sep, max);
        List<Object> out = new ArrayList<>();
        if (sep == null) {
            int j = s.length();
            while (true) {
                while (j > 0 && JinjaLexer.isSpace(s.charAt(j - 1))) j--;
                if (j <= 0) break;
                if (out.size() >= max) {
                    out.add(strip(s.substring(0, j), null, true, false));
                    break;
                }
                int i = j;
                while (i > 0 && !JinjaLexer.isSpace(s.charAt(i - 1))) i--;
                out.add(s.substring(i, j));
                j = i;
            }
        } else {
            if (sep.isEmpty()) throw new TemplateException("ValueError: empty separator");
            int end = s.length();
            while (out.size() < max) {
                int i = s.lastIndexOf(sep, end - sep.length());
                if (i < 0) break;
                out.add(s.substring(i + sep.length(), end));
                end = i;
            }
            out.add(s.substring(0, end));
        }
        Collections.reverse(out);
        return out;
    }

    /** Python {@code str.replace(old, new, count)}. */
    static String replace(String s, String old, String rep, long count) {
        if (count < 0) return s.replace(old, rep);
        StringBuilder sb = new StringBuilder();
        int start = 0;
        for (long k = 0; k < count; k++) {
            int i = old.isEmpty() ? (start <= s.length() ? start : -1) : s.indexOf(old, start);
            if (i < 0) break;
            if (old.isEmpty()) {
                sb.append(rep);
                if (i < s.length()) sb.append(s.charAt(i));
                start = i + 1;
            } else {
                sb.append(s, start, i).append(rep);
                start = i + old.length();
            }
        }
        if (start < s.length()) sb.append(s, start, s.length());
        return sb.toString();
    }

    /** Python {@code str.title()}: a cased letter after an uncased character starts a word. */
    static String title(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        boolean prevCased = false;
        for (int i = 0; i < s.length(); ) {
            int cp = s.codePointAt(i);
            i += Character.charCount(cp);
            boolean cased = Character.isUpperCase(cp) || Character.isLowerCase(cp) || Character.isTitleCase(cp);
            sb.appendCodePoint(cased ? (prevCased ? Character.toLowerCase(cp) : Character.toTitleCase(cp)) : cp);
            prevCased = cased;
        }
        return sb.toString();
    }

    /** Python {@code str.capitalize()}. */
    static String capitalize(String s) {
        if (s.isEmpty()) return s;
        int first = s.codePointAt(0);
        int n = Character.charCount(first);
        return Character.toString(Character.toTitleCase(first)) + s.substring(n).toLowerCase(java.util.Locale.ROOT);
    }

    /** Minimal {@code str.format}: {@code {}}, {@code {0}}, {@code {name}}, <code>{{</code>/<code>}}</code>, specs {@code :d}, {@code :.Nf}, {@code :>N}. */
    static String format(String fmt, List<Object> args, Map<String, Object> kw) {
        StringBuilder sb = new StringBuilder();
        int auto = 0;
        for (int i = 0; i < fmt.length(); i++) {
            char c = fmt.charAt(i);
            if (c == '{' && i + 1 < fmt.length() && fmt.charAt(i + 1) == '{') {
                sb.append('{');
                i++;
            } else if (c == '}' && i + 1 < fmt.length() && fmt.charAt(i + 1) == '}') {
                sb.append('}');
                i++;
            } else if (c == '{') {
                int close = fmt.indexOf('}', i);
                if (close < 0) throw new TemplateException("ValueError: Single '{' encountered in format string");
                String field = fmt.substring(i + 1, close);
                String spec = "";
                int colon = field.indexOf(':');
                if (colon >= 0) {
                    spec = field.substring(colon + 1);
                    field = field.substring(0, colon);
                }
                Object v;
                if (field.isEmpty()) v = args.get(auto++);
                else if (field.chars().allMatch(Character::isDigit)) v = args.get(Integer.parseInt(field));
                else if (kw.containsKey(field)) v = kw.get(field);
                else throw new TemplateException("KeyError: " + PyValues.repr(field));
                sb.append(applySpec(v, spec));
                i = close;
            } else {
                sb.append(c);
            }
        }
        return sb.toString();
    }

    private static String applySpec(Object v, String spec) {
        if (spec.isEmpty()) return PyValues.str(v);
        java.util.regex.Matcher m = java.util.regex.Pattern.compile("([<>^]?)(\\d*)(?:\\.(\\d+))?([dfsx%]?)").matcher(spec);
        if (!m.matches()) return PyValues.str(v);
        String body;
        String type = m.group(4);
        if (m.group(3) != null || type.equals("f")) {
            int prec = m.group(3) == null ? 6 : Integer.parseInt(m.group(3));
            body = new java.math.BigDecimal(PyValues.asDouble(v)).setScale(prec, java.math.RoundingMode.HALF_EVEN).toPlainString();
        } else if (type.equals("x")) {
            body = Long.toHexString(PyValues.asLong(v));
        } else {
            body = PyValues.str(v);
        }
        int width = m.group(2).isEmpty() ? 0 : Integer.parseInt(m.group(2));
        int pad = Math.max(0, width - body.length());
        String align = m.group(1).isEmpty() ? (v instanceof Number ? ">" : "<") : m.group(1);
        return switch (align) {
            case ">" -> " ".repeat(pad) + body;
            case "^" -> " ".repeat(pad / 2) + body + " ".repeat(pad - pad / 2);
            default -> body + " ".repeat(pad);
        };
    }

    /** Python {@code fmt % args} for {@code %s %r %d %i %f %.Nf %x %%}. */
    static String percentFormat(String fmt, Object args) {
        List<?> values = args instanceof PyTuple t ? t : List.of(args == null ? "None" : args);
        if (args == null) values = java.util.Arrays.asList((Object) null);
        StringBuilder sb = new StringBuilder();
        int k = 0;
        for (int i = 0; i < fmt.length(); i++) {
            char c = fmt.charAt(i);
            if (c != '%') {
                sb.append(c);
                continue;
            }
            int j = i + 1;
            while (j < fmt.length() && "-+ 0#.0123456789".indexOf(fmt.charAt(j)) >= 0) j++;
            if (j >= fmt.length()) throw new TemplateException("ValueError: incomplete format");
            char conv = fmt.charAt(j);
            String flags = fmt.substring(i + 1, j);
            i = j;
            if (conv == '%') {
                sb.append('%');
                continue;
            }
            if (k >= values.size()) throw PyValues.typeError("not enough arguments for format string");
            Object v = values.get(k++);
            String body = switch (conv) {
                case 's' -> PyValues.str(v);
                case 'r' -> PyValues.repr(v);
                case 'd', 'i' -> Long.toString(v instanceof Double d ? (long) (double) d : PyValues.asLong(v));
                case 'f' -> {
                    int dot = flags.indexOf('.');
                    int prec = dot >= 0 ? Integer.parseInt(flags.substring(dot + 1)) : 6;
                    flags = dot >= 0 ? flags.substring(0, dot) : flags;
                    yield new java.math.BigDecimal(PyValues.asDouble(v)).setScale(prec, java.math.RoundingMode.HALF_EVEN).toPlainString();
                }
                case 'x' -> Long.toHexString(PyValues.asLong(v));
                default -> throw new TemplateException("ValueError: unsupported format character '" + conv + "'");
            };
            String w = flags.replaceAll("[^0-9]", "");
            int width = w.isEmpty() ? 0 : Integer.parseInt(w);
            int pad = Math.max(0, width - body.length());
            sb.append(flags.startsWith("-") ? body + " ".repeat(pad) : " ".repeat(pad) + body);
        }
        if (k < values.size()) throw PyValues.typeError("not all arguments converted during string formatting");
        return sb.toString();
    }
}
