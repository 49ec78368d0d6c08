package dev.vlm4j.preprocess.template;

import java.util.List;

/** The {@code loop} variable inside a {@code {% for %}} body. */
final class LoopContext {
    private final List<Object> items;
    int index0;

    LoopContext(List<Object> items) {
        this.items = items;
    }

    /** The value of {@code loop.name}, or undefined. */
    Object attribute(String name) {
        int n = items.size();
        return switch (name) {
            case "index" -> (long) index0 + 1;
            case "index0" -> (long) index0;
            case "revindex" -> (long) (n - index0);
            case "revindex0" -> (long) (n - index0 - 1);
            case "first" -> index0 == 0;
            case "last" -> index0 == n - 1;
            case "length" -> (long) n;
            case "depth" -> 1L;
            case "depth0" -> 0L;
            case "previtem" -> index0 > 0 ? items.get(index0 - 1) : Undefined.plain();
            case "nextitem" -> index0 + 1 < n ? items.get(index0 + 1) : Undefined.plain();
            case "cycle" -> (PyCallable) (args, kw) -> {
                if (args.isEmpty()) throw new TemplateException("TypeError: no items for cycling given");
                return args.get(index0 % args.size());
            };
            default -> Undefined.attribute(this, name);
        };
    }
}
