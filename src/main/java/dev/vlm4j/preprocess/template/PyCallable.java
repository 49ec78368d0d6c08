package dev.vlm4j.preprocess.template;

import java.util.List;
import java.util.Map;

/** Something a template can call: a global function, a bound method, a macro. */
@FunctionalInterface
interface PyCallable {
    /** Calls it with already evaluated positional and keyword arguments. */
    Object call(List<Object> args, Map<String, Object> kwargs);
}
