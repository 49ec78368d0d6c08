package dev.vlm4j.preprocess.template;

import java.util.AbstractList;
import java.util.List;

/** An immutable Python tuple; behaves as a {@link List} but prints and compares like a tuple. */
final class PyTuple extends AbstractList<Object> {
    private final Object[] items;

    PyTuple(Object... items) {
        this.items = items.clone();
    }

    PyTuple(List<?> items) {
        this.items = items.toArray();
    }

    @Override
    public Object get(int index) {
        return items[index];
    }

    @Override
    public int size() {
        return items.length;
    }
}
