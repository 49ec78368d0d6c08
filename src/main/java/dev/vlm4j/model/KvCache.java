package dev.vlm4j.model;

import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.Tensor;

/**
 * Keys and values of every decoder layer for one sequence, {@code [capacity, kvHeads * headDim]} per layer,
 * grown by doubling when full. {@link #length()} tokens are valid.
 */
public final class KvCache {
    private final Backend backend;
    private final int layers, width;
    private Tensor[] k, v;
    private int capacity, length;

    public KvCache(Backend backend, int layers, int width, int initialCapacity) {
        this.backend = backend;
        this.layers = layers;
        this.width = width;
        this.capacity = Math.max(16, initialCapacity);
        this.k = new Tensor[layers];
        this.v = new Tensor[layers];
        for (int l = 0; l < layers; l++) {
            k[l] = backend.zeros(capacity, width);
            v[l] = backend.zeros(capacity, width);
        }
    }

    public int length() { return length; }
    /** Rows each layer's tensors hold now (grown by {@link #reserve}). */
    public int capacity() { return capacity; }
    public Tensor keys(int layer) { return k[layer]; }
    public Tensor values(int layer) { return v[layer]; }

    /** Makes room for {@code n} more tokens. */
    void reserve(int n) {
        if (length + n <= capacity) return;
        int cap = capacity;
        while (cap < length + n) cap *= 2;
        for (int l = 0; l < layers; l++) {
            Tensor nk = backend.zeros(cap, width), nv = backend.zeros(cap, width);
            backend.copyRows(nk, 0, k[l]);   // all old rows (those past length are unused), on the backend
            backend.copyRows(nv, 0, v[l]);
            k[l] = nk;
            v[l] = nv;
        }
        capacity = cap;
    }

    /** Writes the new tokens' keys and values of one layer from row {@code at} (the current end; does not advance). */
    void put(int layer, int at, Tensor keys, Tensor values) {
        backend.copyRows(k[layer], at, keys);
        backend.copyRows(v[layer], at, values);
    }

    void advance(int n) { length += n; }

    /** A new cache with room for at least {@code capacity} tokens holding a copy of this one's first {@code n}. */
    public KvCache copyPrefix(int n, int capacity) {
        if (n < 0 || n > length) throw new IllegalArgumentException("cannot copy " + n + " tokens of a cache of " + length);
        KvCache c = new KvCache(backend, layers, width, Math.max(capacity, n));
        if (n > 0) {
            int[] rows = new int[n];
            for (int i = 0; i < n; i++) rows[i] = i;
            for (int l = 0; l < layers; l++) {
                backend.copyRows(c.k[l], 0, backend.gatherRows(k[l], rows));
                backend.copyRows(c.v[l], 0, backend.gatherRows(v[l], rows));
            }
        }
        c.length = n;
        return c;
    }

    /** Forgets everything after the first {@code n} tokens (e.g. to reuse a shared prompt prefix). */
    public void truncate(int n) {
        if (n < 0 || n > length) throw new IllegalArgumentException("cannot truncate a cache of " + length + " to " + n);
        length = n;
    }
}
