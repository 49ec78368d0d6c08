package dev.vlm4j.preprocess.template;

import dev.vlm4j.preprocess.template.Ast.*;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A small Jinja2 interpreter with Python value semantics, configured like Hugging Face transformers' chat template
 * environment ({@code trim_blocks}, {@code lstrip_blocks}, {@code loopcontrols}, immutable sandbox, default
 * {@code Undefined}). Compile once with {@link #compile(String)}, then {@link #render(Map)} any number of times;
 * instances are immutable and thread-safe.
 *
 * <p>Scoping follows Jinja2: {@code set} inside {@code for}, {@code macro} and {@code with} bodies stays local to
 * that body (each loop iteration starts fresh), {@code if} introduces no scope, and {@code namespace()} objects are
 * the way to carry state out of a loop.
 */
public final class JinjaInterpreter {
    private final List<Node> body;

    private JinjaInterpreter(List<Node> body) {
        this.body = body;
    }

    /** Parses a template; throws {@link TemplateException} on syntax errors. */
    public static JinjaInterpreter compile(String source) {
        return new JinjaInterpreter(JinjaParser.parse(source));
    }

    /**
     * Renders the template with the given variables (plain Java / Jackson values; they are converted to the
     * template's Python-like values first). Throws {@link TemplateException} when rendering fails.
     */
    public String render(Map<String, ?> variables) {
        Scope globals = new Scope(null);
        globals.vars.putAll(PyBuiltins.globals());
        variables.forEach((k, v) -> globals.vars.put(k, PyValues.fromJava(v)));
        Scope root = new Scope(globals);
        StringBuilder out = new StringBuilder();
        exec(body, root, out);
        return out.toString();
    }

    /** A variable scope; lookups fall back to the parent. */
    private static final class Scope {
        final Map<String, Object> vars = new HashMap<>();
        final Scope parent;

        Scope(Scope parent) {
            this.parent = parent;
        }

        Object lookup(String name) {
            for (Scope s = this; s != null; s = s.parent) {
                if (s.vars.containsKey(name)) return s.vars.get(name);
            }
            return Undefined.name(name);
        }
    }

    private enum Signal { NONE, BREAK, CONTINUE }

    // ------------------------------------------------------------------ statements

    private Signal exec(List<Node> nodes, Scope scope, StringBuilder out) {
        for (Node n : nodes) {
            Signal s;
            try {
                s = exec(n, scope, out);
            } catch (TemplateException e) {
                throw e.withLine(n.line());
            } catch (ArithmeticException e) {
                throw new TemplateException("OverflowError: " + e.getMessage(), n.line(), e);
            } catch (IndexOutOfBoundsException | ClassCastException | NumberFormatException e) {
                throw new TemplateException("TypeError: " + e.getMessage(), n.line(), e);
            }
            if (s != Signal.NONE) return s;
        }
        return Signal.NONE;
    }

    private Signal exec(Node node, Scope scope, StringBuilder out) {
        switch (node) {
            case Text t -> out.append(t.text());
            case Output o -> out.append(PyValues.str(eval(o.expr(), scope)));
            case If i -> {
                for (Branch b : i.branches()) {
                    if (PyValues.truthy(eval(b.cond(), scope))) return exec(b.body(), scope, out);
                }
                return exec(i.orElse(), scope, out);
            }
            case For f -> execFor(f, scope, out);
            case SetVar s -> {
                Object value = eval(s.value(), scope);
                if (s.attrOf() != null) {
                    Object target = eval(s.attrOf(), scope);
                    if (!(target instanceof Namespace ns)) {
                        throw new TemplateException("TemplateRuntimeError: cannot assign attribute on non-namespace object");
                    }
                    ns.attrs.put(s.targets().getFirst(), value);
                } else {
                    bind(scope, s.targets(), value);
                }
            }
            case SetBlock s -> {
                StringBuilder sb = new StringBuilder();
                exec(s.body(), new Scope(scope), sb);
                scope.vars.put(s.name(), sb.toString());
            }
            case Macro m -> scope.vars.put(m.name(), macro(m, scope));
            case Break b -> {
                return Signal.BREAK;
            }
            case Continue c -> {
                return Signal.CONTINUE;
            }
            case With w -> {
                Scope inner = new Scope(scope);
                for (int k = 0; k < w.names().size(); k++) inner.vars.put(w.names().get(k), eval(w.values().get(k), scope));
                return exec(w.body(), inner, out);
            }
            case FilterBlock fb -> {
                StringBuilder sb = new StringBuilder();
                exec(fb.body(), new Scope(scope), sb);
                out.append(PyValues.str(applyFilter(fb.filter(), sb.toString(), scope)));
            }
        }
        return Signal.NONE;
    }

    private void execFor(For f, Scope scope, StringBuilder out) {
        List<Object> items = PyValues.iterate(eval(f.iter(), scope));
        if (f.filter() != null) {
            List<Object> kept = new ArrayList<>();
            for (Object item : items) {
                Scope s = new Scope(scope);
                bind(s, f.targets(), item);
                if (PyValues.truthy(eval(f.filter(), s))) kept.add(item);
            }
            items = kept;
        }
        if (items.isEmpty()) {
            exec(f.orElse(), new Scope(scope), out);
            return;
        }
        LoopContext loop = new LoopContext(items);
        for (int i = 0; i < items.size(); i++) {
            Scope s = new Scope(scope);
            bind(s, f.targets(), items.get(i));
            loop.index0 = i;
            s.vars.put("loop", loop);
            if (exec(f.body(), s, out) == Signal.BREAK) break;
        }
    }

    private static void bind(Scope scope, List<String> targets, Object value) {
        if (targets.size() == 1) {
            scope.vars.put(targets.getFirst(), value);
            return;
        }
        List<Object> values = PyValues.iterate(value);
        if (values.size() != targets.size()) {
            throw new TemplateException("ValueError: " + (values.size() < targets.size() ? "not enough" : "too many")
                    + " values to unpack (expected " + targets.size() + ", got " + values.size() + ")");
        }
        for (int i = 0; i < targets.size(); i++) scope.vars.put(targets.get(i), values.get(i));
    }

    private PyCallable macro(Macro m, Scope defScope) {
        return (args, kw) -> {
            Scope s = new Scope(defScope);
            List<String> params = m.params();
            if (args.size() > params.size()) {
                throw PyValues.typeError("macro '" + m.name() + "' takes not more than " + params.size() + " argument(s)");
            }
            for (int i = 0; i < params.size(); i++) {
                String p = params.get(i);
                Object v;
                if (i < args.size()) v = args.get(i);
                else if (kw.containsKey(p)) v = kw.get(p);
                else if (m.defaults().get(i) != null) v = eval(m.defaults().get(i), s);
                else v = Undefined.name(p);
                s.vars.put(p, v);
            }
            for (String k : kw.keySet()) {
                if (!params.contains(k)) throw PyValues.typeError("macro '" + m.name() + "' takes no keyword argument '" + k + "'");
            }
            StringBuilder sb = new StringBuilder();
            exec(m.body(), s, sb);
            return sb.toString();
        };
    }

    // ------------------------------------------------------------------ expressions

    private Object eval(Expr e, Scope scope) {
        try {
            return evalInner(e, scope);
        } catch (TemplateException ex) {
            throw ex.withLine(e.line());
        }
    }

    private Object evalInner(Expr e, Scope scope) {
        return switch (e) {
            case Const c -> c.value();
            case Name n -> scope.lookup(n.name());
            case ListLit l -> {
                List<Object> out = new ArrayList<>(l.items().size());
                for (Expr x : l.items()) out.add(eval(x, scope));
                yield out;
            }
            case TupleLit t -> {
                List<Object> out = new ArrayList<>(t.items().size());
                for (Expr x : t.items()) out.add(eval(x, scope));
                yield new PyTuple(out);
            }
            case DictLit d -> {
                Map<Object, Object> out = new LinkedHashMap<>();
                for (int i = 0; i < d.keys().size(); i++) {
                    Object k = eval(d.keys().get(i), scope);
                    if (k instanceof List<?> && !(k instanceof PyTuple) || k instanceof Map<?, ?>) {
                        throw PyValues.typeError("unhashable type: '" + PyValues.typeName(k) + "'");
                    }
                    out.put(k, eval(d.values().get(i), scope));
                }
                yield out;
            }
            case GetAttr g -> PyMethods.attribute(eval(g.obj(), scope), g.name());
            case GetItem g -> PyMethods.item(eval(g.obj(), scope), eval(g.key(), scope));
            case Slice s -> PyMethods.slice(eval(s.obj(), scope), evalOpt(s.start(), scope), evalOpt(s.stop(), scope),
                    evalOpt(s.step(), scope));
            case Call c -> {
                Object fn = eval(c.fn(), scope);
                if (fn instanceof Undefined u) throw u.error();
                if (!(fn instanceof PyCallable callable)) throw PyValues.typeError("'" + PyValues.typeName(fn) + "' object is not callable");
                List<Object> args = new ArrayList<>();
                Map<String, Object> kw = new LinkedHashMap<>();
                evalArgs(c.args(), scope, args, kw);
                yield callable.call(args, kw);
            }
            case FilterCall f -> applyFilter(f, eval(f.value(), scope), scope);
            case TestCall t -> {
                Object v = eval(t.value(), scope);
                List<Object> args = new ArrayList<>();
                Map<String, Object> kw = new LinkedHashMap<>();
                evalArgs(t.args(), scope, args, kw);
                yield PyBuiltins.test(t.name(), v, args, kw) != t.negated();
            }
            case Unary u -> u.op().equals("not") ? !PyValues.truthy(eval(u.operand(), scope))
                    : PyValues.unary(u.op(), eval(u.operand(), scope));
            case Binary b -> switch (b.op()) {
                case "and" -> {
                    Object l = eval(b.left(), scope);
                    yield PyValues.truthy(l) ? eval(b.right(), scope) : l;
                }
                case "or" -> {
                    Object l = eval(b.left(), scope);
                    yield PyValues.truthy(l) ? l : eval(b.right(), scope);
                }
                case "~" -> PyValues.str(eval(b.left(), scope)) + PyValues.str(eval(b.right(), scope));
                default -> PyValues.arith(b.op(), eval(b.left(), scope), eval(b.right(), scope));
            };
            case Compare c -> {
                Object left = eval(c.first(), scope);
                for (int i = 0; i < c.ops().size(); i++) {
                    Object right = eval(c.rest().get(i), scope);
                    if (!compare(c.ops().get(i), left, right)) yield false;
                    left = right;
                }
                yield true;
            }
            case CondExpr c -> PyValues.truthy(eval(c.cond(), scope)) ? eval(c.then(), scope)
                    : c.orElse() != null ? eval(c.orElse(), scope) : Undefined.plain();
        };
    }

    private Object evalOpt(Expr e, Scope scope) {
        return e == null ? null : eval(e, scope);
    }

    private void evalArgs(Args a, Scope scope, List<Object> args, Map<String, Object> kw) {
        for (Expr x : a.positional()) args.add(eval(x, scope));
        for (int i = 0; i < a.kwNames().size(); i++) kw.put(a.kwNames().get(i), eval(a.kwValues().get(i), scope));
    }

    private Object applyFilter(FilterCall f, Object value, Scope scope) {
        List<Object> args = new ArrayList<>();
        Map<String, Object> kw = new LinkedHashMap<>();
        evalArgs(f.args(), scope, args, kw);
        return PyBuiltins.filter(f.name(), value, args, kw);
    }

    private static boolean compare(String op, Object l, Object r) {
        return switch (op) {
            case "==" -> PyValues.eq(l, r);
            case "!=" -> !PyValues.eq(l, r);
            case "in" -> PyValues.contains(r, l);
            case "not in" -> !PyValues.contains(r, l);
            default -> PyValues.order(l, r, op);
        };
    }
}
