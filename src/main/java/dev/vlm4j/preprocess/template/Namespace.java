package dev.vlm4j.preprocess.template;

import java.util.LinkedHashMap;
import java.util.Map;

/** Jinja2's {@code namespace(...)} object: attributes that {@code {% set ns.attr = value %}} may change from any scope. */
final class Namespace {
    final Map<String, Object> attrs = new LinkedHashMap<>();

    @Override
    public String toString() {
        return "<Namespace " + PyValues.repr(attrs) + ">";
    }
}
