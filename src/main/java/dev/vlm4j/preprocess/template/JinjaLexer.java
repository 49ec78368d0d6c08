package dev.vlm4j.preprocess.template;

import java.util.ArrayList;
import java.util.List;

/**
 * Splits a Jinja2 template into tokens, applying whitespace control exactly as Jinja2 does with
 * {@code trim_blocks=True}, {@code lstrip_blocks=True} and {@code keep_trailing_newline=False} (the settings
 * Hugging Face transformers uses for chat templates): {@code {%-}/{@code -%}} style markers strip all whitespace
 * on that side, the first newline after a block or comment tag is removed, and spaces/tabs between the start of a
 * line and a block or comment tag are removed ({@code {%+} disables that for one tag).
 */
final class JinjaLexer {
    /** Token kinds. */
    enum Type { DATA, VAR_BEGIN, VAR_END, BLOCK_BEGIN, BLOCK_END, NAME, STRING, INT, FLOAT, OP, EOF }

    /** One token; {@code value} is the (unescaped) text, {@code line} is 1-based. */
    record Token(Type type, String value, int line) {
        boolean is(Type t, String v) { return type == t && value.equals(v); }
        boolean isName(String v) { return is(Type.NAME, v); }
        boolean isOp(String v) { return is(Type.OP, v); }
        @Override public String toString() { return type + "(" + value + ")"; }
    }

    private static final String[] OPERATORS = {"//", "**", "==", "!=", "<=", ">=",
            "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ".", ",", ":", "|"};

    private final String src;
    private final List<Token> out = new ArrayList<>();
    private int pos;
    private int line = 1;

    private JinjaLexer(String source) {
        this.src = normalizeNewlines(source);
    }

    /** Tokenizes a template source. */
    static List<Token> tokenize(String source) {
        JinjaLexer lx = new JinjaLexer(source);
        lx.run();
        return lx.out;
    }

    /** Python's {@code "\n".join(source.splitlines())}: every line boundary becomes \n, one trailing one is dropped. */
    static String normalizeNewlines(String s) {
        StringBuilder sb = new StringBuilder(s.length());
        int n = s.length();
        for (int i = 0; i < n; i++) {
            char c = s.charAt(i);
            switch (c) {
                case '\r' -> {
                    if (i + 1 < n && s.charAt(i + 1) == '\n') i++;
                    sb.append('\n');
                }
                case '\n', '\u000b', '\u000c', '\u001c', '\u001d', '\u001e', '\u0085', '\u2028', '\u2029' -> sb.append('\n');
                default -> sb.append(c);
            }
        }
        if (sb.length() > 0 && sb.charAt(sb.length() - 1) == '\n') sb.setLength(sb.length() - 1);
        return sb.toString();
    }

    /** Python's {@code str.isspace()} for one char. */
    static boolean isSpace(char c) {
        return Character.isWhitespace(c) || Character.isSpaceChar(c) || c == '\u0085' || (c >= '\u001c' && c <= '\u001f');
    }

    private void run() {
        boolean lineStarting = true;
        int n = src.length();
        while (pos < n) {
            int tag = nextTagStart(pos);
            if (tag < 0) {
                emitData(src.substring(pos), line);
                break;
            }
            String text = src.substring(pos, tag);
            int textLine = line;
            char kind = src.charAt(tag + 1);
            char mod = tag + 2 < n ? src.charAt(tag + 2) : 0;
            if (mod == '-') {
                text = rstrip(text);
            } else if (mod != '+' && kind != '{') {
                int lpos = text.lastIndexOf('\n') + 1;
                if ((lpos > 0 || lineStarting) && lpos < text.length() && allSpace(text, lpos)) text = text.substring(0, lpos);
            }
            emitData(text, textLine);
            line += countNewlines(src, pos, tag);
            pos = tag + 2 + (mod == '-' || mod == '+' ? 1 : 0);
            int endStart = switch (kind) {
                case '#' -> lexComment();
                case '%' -> lexTag(Type.BLOCK_BEGIN, Type.BLOCK_END, '%');
                default -> lexTag(Type.VAR_BEGIN, Type.VAR_END, '}');
            };
            lineStarting = pos > endStart && src.charAt(pos - 1) == '\n';
        }
        out.add(new Token(Type.EOF, "", line));
    }

    private int nextTagStart(int from) {
        int i = from;
        while (true) {
            i = src.indexOf('{', i);
            if (i < 0 || i + 1 >= src.length()) return -1;
            char c = src.charAt(i + 1);
            if (c == '{' || c == '%' || c == '#') return i;
            i++;
        }
    }

    private void emitData(String text, int atLine) {
        if (!text.isEmpty()) out.add(new Token(Type.DATA, text, atLine));
    }

    /** Skips a comment; returns the index where its end marker starts. */
    private int lexComment() {
        int startLine = line;
        int end = src.indexOf("#}", pos);
        if (end < 0) throw new TemplateException("TemplateSyntaxError: Missing end of comment tag", startLine);
        boolean minus = end > pos && src.charAt(end - 1) == '-';
        boolean plus = end > pos && src.charAt(end - 1) == '+';
        int markerStart = minus || plus ? end - 1 : end;
        line += countNewlines(src, pos, end + 2);
        pos = end + 2;
        finishEnd(minus, plus);
        return markerStart;
    }

    /** Lexes the inside of a {@code {% %}} or {@code {{ }}} tag; returns the index where its end marker starts. */
    private int lexTag(Type begin, Type end, char endChar) {
        out.add(new Token(begin, "", line));
        int startLine = line;
        int depth = 0;
        int n = src.length();
        while (true) {
            while (pos < n && isSpace(src.charAt(pos))) {
                if (src.charAt(pos) == '\n') line++;
                pos++;
            }
            if (pos >= n) {
                throw new TemplateException("TemplateSyntaxError: unexpected end of template, expected '"
                        + (endChar == '%' ? "%}" : "}}") + "'", startLine);
            }
            if (depth == 0) {
                char c = src.charAt(pos);
                int markerStart = pos;
                boolean minus = c == '-', plus = c == '+' && endChar == '%';
                int p = minus || plus ? pos + 1 : pos;
                if (p + 1 < n && src.charAt(p) == endChar && src.charAt(p + 1) == '}') {
                    out.add(new Token(end, "", line));
                    pos = p + 2;
                    if (endChar == '%' || minus) finishEnd(minus, plus || endChar != '%');
                    return markerStart;
                }
            }
            char c = src.charAt(pos);
            if (c == '\'' || c == '"') {
                lexString(c);
            } else if (Character.isDigit(c)) {
                lexNumber();
            } else if (Character.isLetter(c) || c == '_') {
                int s = pos;
                while (pos < n && (Character.isLetterOrDigit(src.charAt(pos)) || src.charAt(pos) == '_')) pos++;
                out.add(new Token(Type.NAME, src.substring(s, pos), line));
            } else {
                String op = null;
                for (String o : OPERATORS) if (src.startsWith(o, pos)) { op = o; break; }
                if (op == null) throw new TemplateException("TemplateSyntaxError: unexpected char '" + c + "'", line);
                if (op.equals("(") || op.equals("[") || op.equals("{")) depth++;
                else if (op.equals(")") || op.equals("]") || op.equals("}")) {
                    if (depth == 0) throw new TemplateException("TemplateSyntaxError: unexpected '" + op + "'", line);
                    depth--;
                }
                out.add(new Token(Type.OP, op, line));
                pos += op.length();
            }
        }
    }

    /** After an end marker: {@code -} strips all following whitespace, otherwise trim_blocks drops one newline. */
    private void finishEnd(boolean minus, boolean noTrim) {
        int n = src.length();
        if (minus) {
            while (pos < n && isSpace(src.charAt(pos))) {
                if (src.charAt(pos) == '\n') line++;
                pos++;
            }
        } else if (!noTrim && pos < n && src.charAt(pos) == '\n') {
            pos++;
            line++;
        }
    }

    private void lexString(char quote) {
        int startLine = line;
        int n = src.length();
        int s = ++pos;
        while (pos < n && src.charAt(pos) != quote) {
            if (src.charAt(pos) == '\\') pos++;
            pos++;
        }
        if (pos >= n) throw new TemplateException("TemplateSyntaxError: unexpected end of string", startLine);
        String raw = src.substring(s, pos);
        line += countNewlines(raw, 0, raw.length());
        pos++;
        out.add(new Token(Type.STRING, unescape(raw, startLine), startLine));
    }

    private void lexNumber() {
        int n = src.length();
        int s = pos;
        if (src.startsWith("0x", pos) || src.startsWith("0o", pos) || src.startsWith("0b", pos)) {
            int radix = switch (src.charAt(pos + 1)) { case 'x' -> 16; case 'o' -> 8; default -> 2; };
            pos += 2;
            int ds = pos;
            while (pos < n && (Character.digit(src.charAt(pos), radix) >= 0 || src.charAt(pos) == '_')) pos++;
            out.add(new Token(Type.INT, Long.toString(Long.parseLong(src.substring(ds, pos).replace("_", ""), radix)), line));
            return;
        }
        digits();
        boolean isFloat = false;
        if (pos + 1 < n && src.charAt(pos) == '.' && Character.isDigit(src.charAt(pos + 1))) {
            pos++;
            digits();
            isFloat = true;
        }
        if (pos < n && (src.charAt(pos) == 'e' || src.charAt(pos) == 'E')) {
            int save = pos;
            pos++;
            if (pos < n && (src.charAt(pos) == '+' || src.charAt(pos) == '-')) pos++;
            if (pos < n && Character.isDigit(src.charAt(pos))) {
                digits();
                isFloat = true;
            } else {
                pos = save;
            }
        }
        String text = src.substring(s, pos).replace("_", "");
        out.add(new Token(isFloat ? Type.FLOAT : Type.INT, text, line));
    }

    private void digits() {
        while (pos < src.length() && (Character.isDigit(src.charAt(pos)) || src.charAt(pos) == '_')) pos++;
    }

    /** Python {@code unicode-escape} decoding of a string literal's body. */
    static String unescape(String raw, int atLine) {
        if (raw.indexOf('\\') < 0) return raw;
        StringBuilder sb = new StringBuilder(raw.length());
        int n = raw.length();
        for (int i = 0; i < n; i++) {
            char c = raw.charAt(i);
            if (c != '\\' || i + 1 >= n) {
                sb.append(c);
                continue;
            }
            char e = raw.charAt(++i);
            switch (e) {
                case 'n' -> sb.append('\n');
                case 't' -> sb.append('\t');
                case 'r' -> sb.append('\r');
                case '\\' -> sb.append('\\');
                case '\'' -> sb.append('\'');
                case '"' -> sb.append('"');
                case 'a' -> sb.append('\u0007');
                case 'b' -> sb.append('\b');
                case 'f' -> sb.append('\f');
                case 'v' -> sb.append('\u000b');
                case '\n' -> { }
                case 'x', 'u', 'U' -> {
                    int len = e == 'x' ? 2 : e == 'u' ? 4 : 8;
                    if (i + len >= n) {
                        throw new TemplateException("TemplateSyntaxError: truncated \\" + e + " escape", atLine);
                    }
                    int cp = Integer.parseInt(raw.substring(i + 1, i + 1 + len), 16);
                    sb.appendCodePoint(cp);
                    i += len;
                }
                case 'N' -> {
                    int close = raw.indexOf('}', i);
                    String name = raw.substring(i + 2, close);
                    sb.appendCodePoint(Character.codePointOf(name));
                    i = close;
                }
                default -> {
                    if (e >= '0' && e <= '7') {
                        int j = i, v = 0;
                        while (j < n && j < i + 3 && raw.charAt(j) >= '0' && raw.charAt(j) <= '7') v = v * 8 + (raw.charAt(j++) - '0');
                        sb.appendCodePoint(v);
                        i = j - 1;
                    } else {
                        sb.append('\\').append(e);
                    }
                }
            }
        }
        return sb.toString();
    }

    private static String rstrip(String s) {
        int e = s.length();
        while (e > 0 && isSpace(s.charAt(e - 1))) e--;
        return s.substring(0, e);
    }

    private static boolean allSpace(String s, int from) {
        for (int i = from; i < s.length(); i++) if (!isSpace(s.charAt(i))) return false;
        return true;
    }

    private static int countNewlines(String s, int from, int to) {
        int c = 0;
        for (int i = from; i < to; i++) if (s.charAt(i) == '\n') c++;
        return c;
    }
}
