package dev.vlm4j.preprocess.template;

import java.util.List;

/** The syntax tree of a parsed Jinja2 template: statement nodes ({@link Node}) and expressions ({@link Expr}). */
final class Ast {
    private Ast() {}

    /** A statement: something that produces output or changes the evaluation state. */
    sealed interface Node permits Text, Output, If, For, SetVar, SetBlock, Macro, Break, Continue, With, FilterBlock {
        int line();
    }

    /** Literal template text. */
    record Text(String text, int line) implements Node {}

    /** {@code {{ expr }}}. */
    record Output(Expr expr, int line) implements Node {}

    /** One {@code if} / {@code elif} arm. */
    record Branch(Expr cond, List<Node> body) {}

    /** {@code {% if %}...{% elif %}...{% else %}...{% endif %}}. */
    record If(List<Branch> branches, List<Node> orElse, int line) implements Node {}

    /** {@code {% for a, b in iter if cond %}...{% else %}...{% endfor %}}. */
    record For(List<String> targets, Expr iter, Expr filter, List<Node> body, List<Node> orElse, int line)
            implements Node {}

    /** {@code {% set a = v %}}, {@code {% set a, b = v %}} or {@code {% set ns.attr = v %}} (then {@code attrOf} is the namespace). */
    record SetVar(List<String> targets, Expr attrOf, Expr value, int line) implements Node {}

    /** {@code {% set name %}...{% endset %}}: the rendered body becomes the value. */
    record SetBlock(String name, List<Node> body, int line) implements Node {}

    /** {@code {% macro name(a, b=default) %}...{% endmacro %}}. */
    record Macro(String name, List<String> params, List<Expr> defaults, List<Node> body, int line) implements Node {}

    /** {@code {% break %}}. */
    record Break(int line) implements Node {}

    /** {@code {% continue %}}. */
    record Continue(int line) implements Node {}

    /** {@code {% with a = x, b = y %}...{% endwith %}}. */
    record With(List<String> names, List<Expr> values, List<Node> body, int line) implements Node {}

    /** {@code {% filter name(args) %}...{% endfilter %}}: {@code filter} is a {@link FilterCall} whose value is the body. */
    record FilterBlock(FilterCall filter, List<Node> body, int line) implements Node {}

    /** An expression. */
    sealed interface Expr permits Const, Name, ListLit, TupleLit, DictLit, GetAttr, GetItem, Slice, Call, FilterCall,
            TestCall, Unary, Binary, Compare, CondExpr {
        int line();
    }

    /** A literal constant (string, number, boolean, none). */
    record Const(Object value, int line) implements Expr {}

    /** A variable reference. */
    record Name(String name, int line) implements Expr {}

    /** {@code [a, b]}. */
    record ListLit(List<Expr> items, int line) implements Expr {}

    /** {@code (a, b)} or a bare {@code a, b}. */
    record TupleLit(List<Expr> items, int line) implements Expr {}

    /** <code>{k: v, ...}</code>. */
    record DictLit(List<Expr> keys, List<Expr> values, int line) implements Expr {}

    /** {@code obj.name}. */
    record GetAttr(Expr obj, String name, int line) implements Expr {}

    /** {@code obj[key]}. */
    record GetItem(Expr obj, Expr key, int line) implements Expr {}

    /** {@code obj[start:stop:step]}, any part may be null. */
    record Slice(Expr obj, Expr start, Expr stop, Expr step, int line) implements Expr {}

    /** Positional and keyword call arguments. */
    record Args(List<Expr> positional, List<String> kwNames, List<Expr> kwValues) {
        static final Args NONE = new Args(List.of(), List.of(), List.of());
    }

    /** {@code fn(args)}. */
    record Call(Expr fn, Args args, int line) implements Expr {}

    /** {@code value | name(args)}; {@code value} is null inside a filter block. */
    record FilterCall(Expr value, String name, Args args, int line) implements Expr {}

    /** {@code value is [not] name(args)}. */
    record TestCall(Expr value, String name, Args args, boolean negated, int line) implements Expr {}

    /** {@code not x}, {@code -x}, {@code +x}. */
    record Unary(String op, Expr operand, int line) implements Expr {}

    /** Arithmetic, {@code ~}, {@code and}, {@code or}. */
    record Binary(String op, Expr left, Expr right, int line) implements Expr {}

    /** A (possibly chained) comparison {@code a < b <= c}, including {@code in} / {@code not in}. */
    record Compare(Expr first, List<String> ops, List<Expr> rest, int line) implements Expr {}

    /** {@code then if cond else orElse}; {@code orElse} may be null (then the result is undefined). */
    record CondExpr(Expr cond, Expr then, Expr orElse, int line) implements Expr {}
}
