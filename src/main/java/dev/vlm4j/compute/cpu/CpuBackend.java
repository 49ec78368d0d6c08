package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/**
 * The CPU backend: float32 activations in Java arrays, weights read in place from memory-mapped safetensors
 * (bf16 or f32; f16 weights are widened to f32 once at upload), or block-quantized at upload ({@link QuantMode}).
 * Heavy loops use the Vector API (or scalar kernels, with a warning, where it is unavailable) and the shared
 * {@link Parallel} pool.
 */
public final class CpuBackend implements Backend {
    private final QuantMode quant;
    /** float32 copies of bf16 norm weights (a decode step would otherwise widen each one per call), by identity. */
    private final java.util.Map<Tensor, float[]> normCopies = java.util.Collections.synchronizedMap(new java.util.WeakHashMap<>());

    /** Weights as stored, all processors. */
    public CpuBackend() { this(QuantMode.NONE, 0); }

    public CpuBackend(QuantMode quant) { this(quant, 0); }

    /** @param threads worker count for the kernels; 0 or less means all processors. */
    public CpuBackend(QuantMode quant, int threads) {
        this.quant = quant == null ? QuantMode.NONE : quant;
        if (threads > 0) Parallel.setThreads(threads);
        boolean ignored = Simd.AVAILABLE; // prints the scalar-fallback warning once, at construction
    }

    public QuantMode quantMode() { return quant; }

    /** Whether the Vector API kernels are in use (false: scalar fallback). */
    public static boolean vectorized() { return Simd.AVAILABLE; }

    @Override public Device device() { return Device.CPU; }

    /**
     * Matrices ({@code rank 2}, rows at least 32 wide: every linear weight and the embedding tables) are quantized
     * when a quantized mode is set; vectors (norms, biases) stay as they are.
     */
    @Override
    public Tensor upload(Tensor w) {
        return upload(w, quant);
    }

    /**
     * Vocabulary tables (token embeddings, LM head) are one step more precise than the other weights: kept as stored
     * in q8_0 mode, Q8_0 in q4_0 mode (as llama.cpp does for its output tensor). On the fixtures, quantizing them
     * too drops q8_0's top-1 agreement from 99.2% to 96.6%.
     */
    @Override
    public Tensor uploadVocabTable(Tensor w) {
        return upload(w, quant == QuantMode.Q4_0 ? QuantMode.Q8_0 : QuantMode.NONE);
    }

    private Tensor upload(Tensor w, QuantMode mode) {
        if (mode != QuantMode.NONE && w.rank() == 2 && w.dim(1) >= Quant.BLOCK && w.dtype().isFloat())
            return Quant.quantize(w, mode == QuantMode.Q8_0 ? DType.Q8_0 : DType.Q4_0, Simd.AVAILABLE ? VectorOps::quantizeQ8 : null);
        return switch (w.dtype()) {
            case BF16, F32, Q8_0, Q4_0 -> w;
            default -> Tensor.of(w.toFloatArray(), w.shape());
        };
    }

    @Override public Tensor fromHost(float[] values, long... shape) { return Tensor.of(values, shape); }

    @Override public float[] toHost(Tensor t) { return t.toFloatArray(); }

    @Override public Tensor zeros(long... shape) { return Tensor.zeros(shape); }

    /** Side by side on the workers when every worker gets one (below that, each task keeps all the workers). */
    @Override
    public void runIndependent(int n, java.util.function.IntConsumer task) {
        if (n > 1 && n >= Parallel.threads()) Parallel.forEach(n, task);
        else for (int i = 0; i < n; i++) task.accept(i);
    }

    @Override
    public float[] linearToHost(Tensor x, Tensor w, float[] into) {
        int in = (int) x.dim(-1), n = rows(x);
        if (!Simd.AVAILABLE || w.rank() != 2 || w.dim(1) != in || !(w.dtype() == DType.BF16 || w.dtype() == DType.F32 || w.dtype().isQuantized()))
            return Backend.super.linearToHost(x, w, into);
        return MatMul.linear(f32(x), n, in, w, null, into);
    }

    /** The float32 contents of an activation (no copy when it is a heap tensor). */
    static float[] f32(Tensor t) {
        float[] a = t.heapFloats();
        return a != null ? a : t.toFloatArray();
    }

    private static int rows(Tensor t) { return (int) (t.numel() / t.dim(-1)); }

    @Override
    public Tensor linear(Tensor x, Tensor w, Tensor bias) {
        int in = (int) x.dim(-1), n = rows(x), out = (int) w.dim(0);
        if (w.rank() != 2 || w.dim(1) != in)
            throw new IllegalArgumentException("linear: x " + x + " does not fit weight " + w);
        DType dt = w.dtype();
        if (dt != DType.BF16 && dt != DType.F32 && !dt.isQuantized()) w = Tensor.of(w.toFloatArray(), w.shape());
        float[] b = bias == null ? null : f32(bias);
        float[] y = Simd.AVAILABLE ? MatMul.linear(f32(x), n, in, w, b) : ScalarKernels.linear(f32(x), n, in, w, b);
        return Tensor.of(y, n, out);
    }

    /** Products of one activation with several matrices; few rows against Q8_0 weights share one parallel region. */
    @Override
    public Tensor[] linears(Tensor x, Tensor[] ws, Tensor[] biases) {
        int in = (int) x.dim(-1), n = rows(x);
        // many rows against matrices the packed GEMM takes: one packing of x and one region for all of them
        boolean gemm = Simd.AVAILABLE && Gemm.MANY && ws.length > 1;
        for (Tensor w : ws) gemm &= MatMul.usesGemm(n, w) && w.dim(1) == in;
        if (!gemm && (!Simd.AVAILABLE || n >= MatMul.GEMM_MIN_ROWS)) return Backend.super.linears(x, ws, biases);
        float[][] ys = new float[ws.length][];
        int[] outs = new int[ws.length];
        for (int i = 0; i < ws.length; i++) ys[i] = new float[n * (outs[i] = (int) ws[i].dim(0))];
        if (gemm) Gemm.gemmMany(f32(x), n, in, ws, outs, ys);
        else if (!Gemv.quantMany(f32(x), n, in, ws, ys)) return Backend.super.linears(x, ws, biases);
        Tensor[] out = new Tensor[ws.length];
        for (int i = 0; i < ws.length; i++) {
            int o = (int) ws[i].dim(0);
            if (biases[i] != null) {
                float[] b = f32(biases[i]);
                for (int r = 0; r < n; r++) for (int j = 0; j < o; j++) ys[i][r * o + j] += b[j];
            }
            out[i] = Tensor.of(ys[i], n, o);
        }
        return out;
    }

    @Override
    public Tensor swiGlu(Tensor x, Tensor gateW, Tensor upW) {
        int n = rows(x), in = (int) x.dim(-1);
        if (Simd.AVAILABLE && n < MatMul.GEMM_MIN_ROWS) {   // decode: the SiLU inside the products' region
            float[] y = new float[n * (int) gateW.dim(0)];
            if (Gemv.swiGlu(f32(x), n, in, gateW, upW, y)) return Tensor.of(y, n, gateW.dim(0));
        }
        Tensor[] gu = linears(x, new Tensor[]{gateW, upW}, new Tensor[2]);
        return siluMul(gu[0], gu[1]);
    }

    /** A norm weight as float32: a bf16 vector widened once and cached, anything else as {@link #f32} gives it. */
    private float[] normWeights(Tensor w) {
        if (w.dtype() == DType.BF16 && w.rank() == 1 && w.dim(0) <= 1 << 16) return normCopies.computeIfAbsent(w, Tensor::toFloatArray);
        return f32(w);
    }

    @Override
    public Tensor rmsNorm(Tensor x, Tensor w, float eps) {
        int d = (int) x.dim(-1), n = rows(x);
        float[] a = f32(x), g = normWeights(w), y = new float[a.length];
        Parallel.forRange(n, 16, (r0, r1) -> {
            for (int r = r0; r < r1; r++) {
                int o = r * d;
                double ss = 0;
                for (int k = 0; k < d; k++) ss += (double) a[o + k] * a[o + k];
                float inv = (float) (1.0 / Math.sqrt((float) (ss / d) + eps));
                for (int k = 0; k < d; k++) y[o + k] = g[k] * (a[o + k] * inv);
            }
        });
        return Tensor.of(y, x.shape());
    }

    @Override
    public Tensor add(Tensor a, Tensor b) {
        float[] x = f32(a), z = f32(b), y = new float[x.length];
        if (x.length != z.length) throw new IllegalArgumentException("add: " + a + " vs " + b);
        for (int i = 0; i < x.length; i++) y[i] = x[i] + z[i];
        return Tensor.of(y, a.shape());
    }

    @Override
    public Tensor siluMul(Tensor gate, Tensor up) {
        float[] g = f32(gate), u = f32(up), y = new float[g.length];
        Parallel.forRange(g.length, 1 << 14, (i0, i1) -> {
            if (Simd.AVAILABLE) VectorOps.siluMul(g, u, y, i0, i1);
            else ScalarKernels.siluMul(g, u, y, i0, i1);
        });
        return Tensor.of(y, gate.shape());
    }

    @Override
    public Tensor gelu(Tensor x) {
        float[] a = f32(x), y = new float[a.length];
        Parallel.forRange(a.length, 1 << 14, (i0, i1) -> {
            for (int i = i0; i < i1; i++) y[i] = (float) (0.5 * a[i] * (1.0 + Erf.erf(a[i] / Math.sqrt(2.0))));
        });
        return Tensor.of(y, x.shape());
    }

    @Override
    public Tensor embedding(Tensor table, int[] ids) {
        int d = (int) table.dim(1), vocab = (int) table.dim(0);
        float[] y = new float[ids.length * d];
        float[] row = Simd.AVAILABLE ? new float[Quant.blocksPerRow(d) * Quant.BLOCK] : null;
        for (int i = 0; i < ids.length; i++) {
            if (ids[i] < 0 || ids[i] >= vocab)
                throw new IllegalArgumentException("token id " + ids[i] + " outside the vocabulary of " + vocab);
            if (row != null && (table.dtype() == DType.BF16 || table.dtype().isQuantized())) {
                MatMul.rowSlice(table, d, ids[i], 0, d, row);
                System.arraycopy(row, 0, y, i * d, d);
                continue;
            }
            long base = (long) ids[i] * d;
            for (int k = 0; k < d; k++) y[i * d + k] = table.getFloat(base + k);
        }
        return Tensor.of(y, ids.length, d);
    }

    @Override
    public Tensor gatherRows(Tensor x, int[] idx) {
        int d = (int) x.dim(-1);
        float[] a = f32(x), y = new float[idx.length * d];
        for (int i = 0; i < idx.length; i++) System.arraycopy(a, idx[i] * d, y, i * d, d);
        return Tensor.of(y, idx.length, d);
    }

    @Override
    public void scatterRows(Tensor dst, int[] idx, Tensor src) {
        int d = (int) dst.dim(-1);
        float[] a = dst.heapFloats(), s = f32(src);
        if (a == null) throw new IllegalArgumentException("scatterRows needs a heap float32 destination");
        int lowest = Integer.MAX_VALUE;
        for (int i = 0; i < idx.length; i++) {
            System.arraycopy(s, i * d, a, idx[i] * d, d);
            lowest = Math.min(lowest, idx[i]);
        }
        Attention.keysWritten(a, lowest);
    }

    @Override
    public void copyRows(Tensor dst, int dstRow, Tensor src) {
        int d = (int) dst.dim(-1);
        float[] a = dst.heapFloats(), s = f32(src);
        if (a == null) throw new IllegalArgumentException("copyRows needs a heap float32 destination");
        System.arraycopy(s, 0, a, dstRow * d, s.length);
        Attention.keysWritten(a, dstRow);   // a key cache's kept transposition (decode attention) is stale from here
    }

    @Override
    public Tensor columns(Tensor x, int from, int to) {
        int d = (int) x.dim(-1), n = rows(x), w = to - from;
        float[] a = f32(x), y = new float[n * w];
        for (int r = 0; r < n; r++) System.arraycopy(a, r * d + from, y, r * w, w);
        return Tensor.of(y, n, w);
    }

    @Override
    public void rotary(Tensor x, int heads, Tensor cos, Tensor sin) {
        int n = rows(x), d = (int) cos.dim(-1), half = d / 2;
        float[] a = x.heapFloats(), c = f32(cos), s = f32(sin);
        if (a == null) throw new IllegalArgumentException("rotary needs a heap float32 tensor");
        for (int r = 0; r < n; r++) {
            for (int h = 0; h < heads; h++) {
                int o = r * heads * d + h * d, co = r * d;
                for (int j = 0; j < half; j++) {
                    float x1 = a[o + j], x2 = a[o + j + half];
                    a[o + j] = x1 * c[co + j] - x2 * s[co + j];
                    a[o + j + half] = x2 * c[co + j + half] + x1 * s[co + j + half];
                }
            }
        }
    }

    /** Batched decode attention: the sequences are spread over the workers, each computed as {@link #attention} would. */
    @Override
    public Tensor attentionBatch(Tensor q, Tensor[] keys, Tensor[] values, int[] lens, int hq, int hkv) {
        int b = rows(q), width = (int) q.dim(-1), d = width / hq;
        if (keys.length != b || values.length != b || lens.length != b)
            throw new IllegalArgumentException("attentionBatch: " + b + " queries but " + keys.length + " caches");
        float[] qa = f32(q), out = new float[b * width];
        Parallel.forEach(b, i -> {
            float[] qi = java.util.Arrays.copyOfRange(qa, i * width, (i + 1) * width);
            AttentionMask mask = AttentionMask.causal(lens[i] - 1);
            Tensor a = Simd.AVAILABLE ? Attention.compute(qi, 1, f32(keys[i]), f32(values[i]), lens[i], hq, hkv, d, mask)
                    : ScalarAttention.compute(qi, 1, f32(keys[i]), f32(values[i]), lens[i], hq, hkv, d, mask);
            System.arraycopy(f32(a), 0, out, i * width, width);
        });
        return Tensor.of(out, b, width);
    }

    @Override
    public Tensor attention(Tensor q, Tensor k, Tensor v, int kvLen, int hq, int hkv, AttentionMask mask) {
        int d = (int) (q.dim(-1) / hq);
        return Simd.AVAILABLE ? Attention.compute(f32(q), rows(q), f32(k), f32(v), kvLen, hq, hkv, d, mask)
                : ScalarAttention.compute(f32(q), rows(q), f32(k), f32(v), kvLen, hq, hkv, d, mask);
    }
}
