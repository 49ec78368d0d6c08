package dev.vlm4j.preprocess.template;

import dev.vlm4j.preprocess.template.Ast.*;
import dev.vlm4j.preprocess.template.JinjaLexer.Token;
import dev.vlm4j.preprocess.template.JinjaLexer.Type;

import java.util.ArrayList;
import java.util.List;
import java.util.Set;

/**
 * Recursive-descent parser from {@link JinjaLexer} tokens to an {@link Ast} tree. Operator precedence and the
 * placement of filters / tests follow Jinja2's parser ({@code -x|f} is {@code f(-x)}, {@code a|length - 1} is
 * {@code (a|length) - 1}, {@code **} is left-associative, comparisons chain like Python's).
 */
final class JinjaParser {
    private static final Set<String> COMPARE_OPS = Set.of("==", "!=", "<", "<=", ">", ">=");
    private static final Set<String> TEST_ARG_STOP = Set.of("else", "or", "and", "if", "in", "is", "not");

    private final List<Token> tokens;
    private int pos;

    private JinjaParser(List<Token> tokens) {
        this.tokens = tokens;
    }

    /** Parses a whole template into its top-level statement list. */
    static List<Node> parse(String source) {
        JinjaParser p = new JinjaParser(JinjaLexer.tokenize(source));
        List<Node> body = p.parseBody(Set.of());
        p.expect(Type.EOF);
        return body;
    }

    // ------------------------------------------------------------------ statements

    /** Parses nodes until EOF or a block tag whose name is in {@code endNames} (left as the current token). */
    private List<Node> parseBody(Set<String> endNames) {
        List<Node> body = new ArrayList<>();
        while (true) {
            Token t = peek();
            switch (t.type()) {
                case EOF -> {
                    if (!endNames.isEmpty()) {
                        throw syntax("Unexpected end of template. Jinja was looking for the following tags: "
                                + String.join(" or ", endNames.stream().sorted().map(s -> "'" + s + "'").toList()), t);
                    }
                    return body;
                }
                case DATA -> {
                    next();
                    body.add(new Text(t.value(), t.line()));
                }
                case VAR_BEGIN -> {
                    next();
                    Expr e = parseTuple(true);
                    expect(Type.VAR_END);
                    body.add(new Output(e, t.line()));
                }
                case BLOCK_BEGIN -> {
                    next();
                    Token name = expect(Type.NAME);
                    if (endNames.contains(name.value())) {
                        pos--;
                        return body;
                    }
                    body.add(parseStatement(name));
                }
                default -> throw syntax("unexpected " + t, t);
            }
        }
    }

    /** Consumes {@code name %}} where {@code name} is the current token (left there by {@link #parseBody}). */
    private String endTag() {
        String name = expect(Type.NAME).value();
        expect(Type.BLOCK_END);
        return name;
    }

    private Node parseStatement(Token kw) {
        int line = kw.line();
        switch (kw.value()) {
            case "if" -> {
                List<Branch> branches = new ArrayList<>();
                List<Node> orElse = List.of();
                Expr cond = parseTuple(false);
                while (true) {
                    expect(Type.BLOCK_END);
                    List<Node> body = parseBody(Set.of("elif", "else", "endif"));
                    branches.add(new Branch(cond, body));
                    String tag = expect(Type.NAME).value();
                    if (tag.equals("elif")) {
                        cond = parseTuple(false);
                        continue;
                    }
                    if (tag.equals("else")) {
                        expect(Type.BLOCK_END);
                        orElse = parseBody(Set.of("endif"));
                        endTag();
                    } else {
                        expect(Type.BLOCK_END);
                    }
                    return new If(branches, orElse, line);
                }
            }
            case "for" -> {
                List<String> targets = parseTargetNames();
                expectName("in");
                Expr iter = parseTuple(false);
                Expr filter = null;
                if (skipName("if")) filter = parseExpression(true);
                if (peek().isName("recursive")) throw syntax("recursive for loops are not supported", peek());
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endfor", "else"));
                List<Node> orElse = List.of();
                if (endTag().equals("else")) {
                    orElse = parseBody(Set.of("endfor"));
                    endTag();
                }
                return new For(targets, iter, filter, body, orElse, line);
            }
            case "set" -> {
                Token first = expect(Type.NAME);
                if (peek().isOp(".")) {
                    next();
                    String attr = expect(Type.NAME).value();
                    expectOp("=");
                    Expr value = parseTuple(true);
                    expect(Type.BLOCK_END);
                    return new SetVar(List.of(attr), new Name(first.value(), first.line()), value, line);
                }
                List<String> targets = new ArrayList<>(List.of(first.value()));
                while (skipOp(",")) targets.add(expect(Type.NAME).value());
                if (skipOp("=")) {
                    Expr value = parseTuple(true);
                    expect(Type.BLOCK_END);
                    return new SetVar(targets, null, value, line);
                }
                if (targets.size() != 1) throw syntax("expected '='", peek());
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endset"));
                endTag();
                return new SetBlock(first.value(), body, line);
            }
            case "macro" -> {
                String name = expect(Type.NAME).value();
                List<String> params = new ArrayList<>();
                List<Expr> defaults = new ArrayList<>();
                expectOp("(");
                while (!skipOp(")")) {
                    if (!params.isEmpty()) expectOp(",");
                    if (skipOp(")")) break;
                    params.add(expect(Type.NAME).value());
                    defaults.add(skipOp("=") ? parseExpression(true) : null);
                }
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endmacro"));
                endTag();
                return new Macro(name, params, defaults, body, line);
            }
            case "break", "continue" -> {
                expect(Type.BLOCK_END);
                return kw.value().equals("break") ? new Break(line) : new Continue(line);
            }
            case "with" -> {
                List<String> names = new ArrayList<>();
                List<Expr> values = new ArrayList<>();
                while (peek().type() != Type.BLOCK_END) {
                    if (!names.isEmpty()) expectOp(",");
                    names.add(expect(Type.NAME).value());
                    expectOp("=");
                    values.add(parseExpression(true));
                }
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endwith"));
                endTag();
                return new With(names, values, body, line);
            }
            case "generation" -> {
                // transformers' AssistantTracker extension: renders its body unchanged
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endgeneration"));
                endTag();
                return new With(List.of(), List.of(), body, line);
            }
            case "filter" -> {
                FilterCall f = parseFilter(null);
                expect(Type.BLOCK_END);
                List<Node> body = parseBody(Set.of("endfilter"));
                endTag();
                return new FilterBlock(f, body, line);
            }
            default -> throw syntax("Encountered unknown or unsupported tag '" + kw.value() + "'", kw);
        }
    }

    private List<String> parseTargetNames() {
        boolean paren = skipOp("(");
        List<String> names = new ArrayList<>();
        names.add(expect(Type.NAME).value());
        while (skipOp(",")) {
            if (peek().type() != Type.NAME) break;
            names.add(expect(Type.NAME).value());
        }
        if (paren) expectOp(")");
        return names;
    }

    // ------------------------------------------------------------------ expressions

    /** An expression, or a bare tuple {@code a, b} when commas follow. */
    private Expr parseTuple(boolean condExpr) {
        int line = peek().line();
        Expr first = parseExpression(condExpr);
        if (!peek().isOp(",")) return first;
        List<Expr> items = new ArrayList<>(List.of(first));
        while (skipOp(",")) {
            Type t = peek().type();
            if (t == Type.BLOCK_END || t == Type.VAR_END || peek().isName("if")) break;
            items.add(parseExpression(condExpr));
        }
        return new TupleLit(items, line);
    }

    private Expr parseExpression(boolean condExpr) {
        return condExpr ? parseCondExpr() : parseOr();
    }

    private Expr parseCondExpr() {
        Expr e = parseOr();
        while (peek().isName("if")) {
            int line = next().line();
            Expr cond = parseOr();
            Expr orElse = skipName("else") ? parseCondExpr() : null;
            e = new CondExpr(cond, e, orElse, line);
        }
        return e;
    }

    private Expr parseOr() {
        Expr e = parseAnd();
        while (peek().isName("or")) {
            int line = next().line();
            e = new Binary("or", e, parseAnd(), line);
        }
        return e;
    }

    private Expr parseAnd() {
        Expr e = parseNot();
        while (peek().isName("and")) {
            int line = next().line();
            e = new Binary("and", e, parseNot(), line);
        }
        return e;
    }

    private Expr parseNot() {
        if (peek().isName("not")) {
            int line = next().line();
            return new Unary("not", parseNot(), line);
        }
        return parseCompare();
    }

    private Expr parseCompare() {
        int line = peek().line();
        Expr first = parseMath1();
        List<String> ops = new ArrayList<>();
        List<Expr> rest = new ArrayList<>();
        while (true) {
            Token t = peek();
            if (t.type() == Type.OP && COMPARE_OPS.contains(t.value())) {
                next();
                ops.add(t.value());
            } else if (t.isName("in")) {
                next();
                ops.add("in");
            } else if (t.isName("not") && peekAt(1).isName("in")) {
                next();
                next();
                ops.add("not in");
            } else {
                break;
            }
            rest.add(parseMath1());
        }
        return ops.isEmpty() ? first : new Compare(first, ops, rest, line);
    }

    private Expr parseMath1() {
        Expr e = parseConcat();
        while (peek().isOp("+") || peek().isOp("-")) {
            Token op = next();
            e = new Binary(op.value(), e, parseConcat(), op.line());
        }
        return e;
    }

    private Expr parseConcat() {
        Expr e = parseMath2();
        while (peek().isOp("~")) {
            Token op = next();
            e = new Binary("~", e, parseMath2(), op.line());
        }
        return e;
    }

    private Expr parseMath2() {
        Expr e = parsePow();
        while (peek().isOp("*") || peek().isOp("/") || peek().isOp("//") || peek().isOp("%")) {
            Token op = next();
            e = new Binary(op.value(), e, parsePow(), op.line());
        }
        return e;
    }

    private Expr parsePow() {
        Expr e = parseUnary(true);
        while (peek().isOp("**")) {
            Token op = next();
            e = new Binary("**", e, parseUnary(true), op.line());
        }
        return e;
    }

    private Expr parseUnary(boolean withFilter) {
        Token t = peek();
        Expr e;
        if (t.isOp("-") || t.isOp("+")) {
            next();
            e = new Unary(t.value(), parseUnary(false), t.line());
        } else {
            e = parsePrimary();
        }
        e = parsePostfix(e);
        return withFilter ? parseFilterExpr(e) : e;
    }

    private Expr parsePrimary() {
        Token t = next();
        int line = t.line();
        switch (t.type()) {
            case NAME -> {
                return switch (t.value()) {
                    case "true", "True" -> new Const(Boolean.TRUE, line);
                    case "false", "False" -> new Const(Boolean.FALSE, line);
                    case "none", "None" -> new Const(null, line);
                    default -> new Name(t.value(), line);
                };
            }
            case STRING -> {
                StringBuilder sb = new StringBuilder(t.value());
                while (peek().type() == Type.STRING) sb.append(next().value());
                return new Const(sb.toString(), line);
            }
            case INT -> {
                return new Const(Long.parseLong(t.value()), line);
            }
            case FLOAT -> {
                return new Const(Double.parseDouble(t.value()), line);
            }
            case OP -> {
                switch (t.value()) {
                    case "(" -> {
                        if (skipOp(")")) return new TupleLit(List.of(), line);
                        Expr first = parseExpression(true);
                        if (skipOp(")")) return first;
                        List<Expr> items = new ArrayList<>(List.of(first));
                        while (skipOp(",")) {
                            if (peek().isOp(")")) break;
                            items.add(parseExpression(true));
                        }
                        expectOp(")");
                        return new TupleLit(items, line);
                    }
                    case "[" -> {
                        List<Expr> items = new ArrayList<>();
                        while (!skipOp("]")) {
                            if (!items.isEmpty()) {
                                expectOp(",");
                                if (skipOp("]")) break;
                            }
                            items.add(parseExpression(true));
                        }
                        return new ListLit(items, line);
                    }
                    case "{" -> {
                        List<Expr> keys = new ArrayList<>();
                        List<Expr> values = new ArrayList<>();
                        while (!skipOp("}")) {
                            if (!keys.isEmpty()) {
                                expectOp(",");
                                if (skipOp("}")) break;
                            }
                            keys.add(parseExpression(true));
                            expectOp(":");
                            values.add(parseExpression(true));
                        }
                        return new DictLit(keys, values, line);
                    }
                    default -> { }
                }
            }
            default -> { }
        }
        throw syntax("unexpected " + describe(t), t);
    }

    private Expr parsePostfix(Expr e) {
        while (true) {
            Token t = peek();
            if (t.isOp(".")) {
                next();
                Token attr = next();
                if (attr.type() == Type.NAME) e = new GetAttr(e, attr.value(), t.line());
                else if (attr.type() == Type.INT) e = new GetItem(e, new Const(Long.parseLong(attr.value()), t.line()), t.line());
                else throw syntax("expected name or number after '.'", attr);
            } else if (t.isOp("[")) {
                next();
                e = parseSubscript(e, t.line());
            } else if (t.isOp("(")) {
                next();
                e = new Call(e, parseArgs(), t.line());
            } else {
                return e;
            }
        }
    }

    private Expr parseSubscript(Expr obj, int line) {
        Expr start = null;
        if (!peek().isOp(":")) {
            start = parseExpression(true);
            if (skipOp("]")) return new GetItem(obj, start, line);
        }
        expectOp(":");
        Expr stop = null, step = null;
        if (!peek().isOp("]") && !peek().isOp(":")) stop = parseExpression(true);
        if (skipOp(":") && !peek().isOp("]")) step = parseExpression(true);
        expectOp("]");
        return new Slice(obj, start, stop, step, line);
    }

    /** Arguments after an already consumed {@code (}, up to and including {@code )}. */
    private Args parseArgs() {
        List<Expr> pos = new ArrayList<>();
        List<String> kwNames = new ArrayList<>();
        List<Expr> kwValues = new ArrayList<>();
        boolean first = true;
        while (!skipOp(")")) {
            if (!first) {
                expectOp(",");
                if (skipOp(")")) break;
            }
            first = false;
            if (peek().type() == Type.NAME && peekAt(1).isOp("=")) {
                kwNames.add(next().value());
                next();
                kwValues.add(parseExpression(true));
            } else {
                if (!kwNames.isEmpty()) throw syntax("positional argument follows keyword argument", peek());
                pos.add(parseExpression(true));
            }
        }
        return new Args(pos, kwNames, kwValues);
    }

    private Expr parseFilterExpr(Expr e) {
        while (true) {
            Token t = peek();
            if (t.isOp("|")) {
                next();
                e = parseFilter(e);
            } else if (t.isName("is")) {
                next();
                boolean negated = skipName("not");
                Token name = expect(Type.NAME);
                Args args = Args.NONE;
                Token a = peek();
                if (a.isOp("(")) {
                    next();
                    args = parseArgs();
                } else if ((a.type() == Type.NAME && !TEST_ARG_STOP.contains(a.value())) || a.type() == Type.STRING
                        || a.type() == Type.INT || a.type() == Type.FLOAT || a.isOp("[") || a.isOp("{")) {
                    args = new Args(List.of(parsePostfix(parsePrimary())), List.of(), List.of());
                }
                e = new TestCall(e, name.value(), args, negated, t.line());
            } else if (t.isOp("(")) {
                next();
                e = new Call(e, parseArgs(), t.line());
            } else {
                return e;
            }
        }
    }

    /** {@code name(args)} after a consumed {@code |} ({@code value} is null for a filter block). */
    private FilterCall parseFilter(Expr value) {
        Token name = expect(Type.NAME);
        StringBuilder full = new StringBuilder(name.value());
        while (peek().isOp(".")) {
            next();
            full.append('.').append(expect(Type.NAME).value());
        }
        Args args = skipOp("(") ? parseArgs() : Args.NONE;
        return new FilterCall(value, full.toString(), args, name.line());
    }

    // ------------------------------------------------------------------ token helpers

    private Token peek() {
        return tokens.get(pos);
    }

    private Token peekAt(int k) {
        return tokens.get(Math.min(pos + k, tokens.size() - 1));
    }

    private Token next() {
        Token t = tokens.get(pos);
        if (t.type() != Type.EOF) pos++;
        return t;
    }

    private Token expect(Type type) {
        Token t = peek();
        if (t.type() != type) throw syntax("expected " + describe(type) + ", got " + describe(t), t);
        return next();
    }

    private void expectOp(String op) {
        if (!skipOp(op)) throw syntax("expected '" + op + "', got " + describe(peek()), peek());
    }

    private void expectName(String name) {
        if (!skipName(name)) throw syntax("expected '" + name + "', got " + describe(peek()), peek());
    }

    private boolean skipOp(String op) {
        if (!peek().isOp(op)) return false;
        next();
        return true;
    }

    private boolean skipName(String name) {
        if (!peek().isName(name)) return false;
        next();
        return true;
    }

    private static String describe(Type t) {
        return switch (t) {
            case BLOCK_END -> "end of statement block";
            case VAR_END -> "end of print statement";
            case EOF -> "end of template";
            default -> t.name().toLowerCase();
        };
    }

    private static String describe(Token t) {
        return switch (t.type()) {
            case NAME, OP -> "'" + t.value() + "'";
            case STRING -> "string";
            case INT, FLOAT -> "number " + t.value();
            default -> describe(t.type());
        };
    }

    private static TemplateException syntax(String msg, Token at) {
        return new TemplateException("TemplateSyntaxError: " + msg, at.line());
    }
}
