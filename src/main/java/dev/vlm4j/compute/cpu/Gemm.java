package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/**
 * The cache-blocked GEMM for many activation rows (prefill, vision): {@code y[n, out] = x[n, in] * w[out, in]^T}.
 * <ol>
 *   <li>The activations are packed once per call (one call may serve several matrices: {@link #gemmMany}) into {@link #MR}-row micro-panels, k-major
 *       ({@code ap[block][k][MR]}, zero-padded rows), so the micro-kernel reads them sequentially.</li>
 *   <li>Workers own disjoint panels of {@link #NR} weight rows, claimed in shrinking pieces ({@link #GUIDED}). A panel is converted to float32 once (bf16, f32,
 *       Q8_0, Q4_0), reading each weight row front to back, and packed k-major ({@code [in][NR]}, in L2); then for
 *       each {@link #KC}-deep slice (in L1) the 6 x NR register-blocked micro-kernel (12 vector accumulators,
 *       broadcast activations) runs over every activation block against it.</li>
 *   <li>The panel's outputs accumulate over the k-slices in a contiguous per-worker strip ({@code [rows][NR]}),
 *       copied into {@code y} once per panel (and row chunk).</li>
 * </ol>
 */
final class Gemm {
    private static final VectorSpecies<Float> F = MatMul.F;
    private static final int L = F.length();
    static final int NR = 2 * L, MR = 6, KC = Integer.getInteger("vlm4j.gemmKc", 256);
    private static final int BLK = Quant.BLOCK;
    private static final ValueLayout.OfShort I16 = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    /** The calling thread's packed-activation buffer (grown as needed, reused across calls). */
    private static final ThreadLocal<float[]> PACKED_A = ThreadLocal.withInitial(() -> new float[0]);
    /** Each worker's full-depth packed weight panels ({@code [panel][in][NR]}, a group of them), reused across calls. */
    private static final ThreadLocal<float[]> PANEL = ThreadLocal.withInitial(() -> new float[0]);
    /** Each worker's output strips ({@code [panel][chunk rows][NR]}), reused across calls. */
    private static final ThreadLocal<float[]> STRIPS = ThreadLocal.withInitial(() -> new float[0]);

    /**
     * The micro-kernel loop in C ({@link NativeKernels#gemmPanel}: the same operations, bit-identical results, without
     * the Java kernel's bounds checks) where the native library is loaded and vectors have 16 lanes;
     * {@code -Dvlm4j.gemm.native=false} keeps the Vector API kernel.
     */
    /** Row blocks of activations per L2-resident chunk (6 rows each: 192 rows). */
    static final int MC_BLOCKS = Integer.getInteger("vlm4j.gemmMcBlocks", 32);
    /**
     * Packed activations above this size (bytes) go in chunks of {@link #MC_BLOCKS} row blocks against groups of panels;
     * below it one panel at a time runs over all rows, the activations streaming from the last-level cache once per
     * panel. Default: a fifth of the last-level cache, at least 16 MB ({@code -Dvlm4j.gemmChunkAboveBytes}). On the
     * 2-vCPU build machine (300 MB L3), with the output strips, alternating in one process: the 3B down projection at
     * 1024 tokens (45 MB) 195 -> 218 GFLOP/s one panel at a time, a 1036x1036 ViT MLP down projection (5476 x 3420,
     * 75 MB) 213 chunked against 250; before the strips, with 16 MB, the 45 MB case was the other way round.
     */
    static final long CHUNK_ABOVE_BYTES = Long.getLong("vlm4j.gemmChunkAboveBytes", Math.max(16L << 20, lastLevelCacheBytes() / 5));
    /** Bytes of float32 weight panels packed at a time by a worker. */
    static final long GROUP_BYTES = Long.getLong("vlm4j.gemmGroupBytes", 8L << 20);

    /**
     * Panels handed out in shrinking pieces ({@link Parallel#forRangeGuided}, at least a panel group) rather than four
     * fixed chunks per worker: the threads finish a product together, and a thread slowed by another guest on its
     * core takes fewer panels ({@code -Dvlm4j.gemm.guided=false}: fixed chunks). On the 2-vCPU build machine,
     * alternating runs of a 1024-token 3B prefill: 33.4 / 36.2, 32.8 / 38.2, 31.7 / 32.9, 29.0 / 35.5, 30.1 / 30.6 s.
     */
    static final boolean GUIDED = !"false".equals(System.getProperty("vlm4j.gemm.guided"));

    /** Whether {@code CpuBackend.linears} runs several matrices as one {@link #gemmMany} ({@code -Dvlm4j.gemmMany=false}: one GEMM each). */
    static final boolean MANY = !"false".equals(System.getProperty("vlm4j.gemmMany"));

    static final boolean NATIVE = NR == 32 && NativeKernels.gemmAvailable()
            && !"false".equals(System.getProperty("vlm4j.gemm.native"));

    private Gemm() {}

    /** The largest cache of CPU 0 from Linux sysfs ({@code .../cache/index*}/size, "307200K"), 0 where unknown. */
    static long lastLevelCacheBytes() {
        long best = 0;
        for (int i = 0; i < 8; i++) {
            java.nio.file.Path f = java.nio.file.Path.of("/sys/devices/system/cpu/cpu0/cache/index" + i + "/size");
            try {
                String v = java.nio.file.Files.readString(f).trim().toUpperCase(java.util.Locale.ROOT);
                long mul = v.endsWith("K") ? 1L << 10 : v.endsWith("M") ? 1L << 20 : v.endsWith("G") ? 1L << 30 : 1;
                best = Math.max(best, Long.parseLong(mul == 1 ? v : v.substring(0, v.length() - 1)) * mul);
            } catch (java.io.IOException | RuntimeException e) {
                // no such level or not Linux: keep what was found
            }
        }
        return best;
    }

    static void gemm(float[] x, int n, int in, Tensor w, int out, float[] y) { gemm(x, n, in, w, out, y, NATIVE); }

    /** As {@link #gemm(float[], int, int, Tensor, int, float[])}, choosing the C or the Vector API micro-kernel. */
    static void gemm(float[] x, int n, int in, Tensor w, int out, float[] y, boolean useNative) {
        gemm(x, n, in, w, out, y, useNative, CHUNK_ABOVE_BYTES);
    }

    /** As above, with the size above which the activations go in row chunks against panel groups (tests: 0, always). */
    static void gemm(float[] x, int n, int in, Tensor w, int out, float[] y, boolean useNative, long chunkAboveBytes) {
        gemmMany(x, n, in, new Tensor[]{w}, new int[]{out}, new float[][]{y}, useNative, chunkAboveBytes);
    }

    /** {@link #gemmMany(float[], int, int, Tensor[], int[], float[][], boolean, long)} with the default kernel and order. */
    static void gemmMany(float[] x, int n, int in, Tensor[] ws, int[] outs, float[][] ys) {
        gemmMany(x, n, in, ws, outs, ys, NATIVE, CHUNK_ABOVE_BYTES);
    }

    /**
     * {@code ys[m] = x * ws[m]^T} for several matrices of input width {@code in} ({@code outs[m]} rows each): the
     * activations packed once and the panels of every matrix handed out in one parallel region (q/k/v, gate/up:
     * two packings fewer, and the narrow k/v products no longer run as regions of their own). Each output is
     * computed exactly as {@link #gemm} computes it alone.
     */
    static void gemmMany(float[] x, int n, int in, Tensor[] ws, int[] outs, float[][] ys, boolean useNative, long chunkAboveBytes) {
        if (useNative && !NATIVE) throw new IllegalStateException("the native GEMM kernel is not available here");
        int blocks = (n + MR - 1) / MR;
        float[] a = Parallel.scratch(PACKED_A, blocks * MR * in);
        Parallel.forRange(blocks, 8, (b0, b1) -> { for (int b = b0; b < b1; b++) packA(x, n, in, b, a); });
        int panels = 0;
        for (int out : outs) panels += (out + NR - 1) / NR;
        int[] pm = new int[panels], pj = new int[panels];   // each panel's matrix and first output row in it
        WeightRows[] rowsOf = new WeightRows[ws.length];
        for (int m = 0, p = 0; m < ws.length; m++) {
            rowsOf[m] = new WeightRows(ws[m], in);
            for (int j0 = 0; j0 < outs[m]; j0 += NR, p++) {
                pm[p] = m;
                pj[p] = j0;
            }
        }
        // panels packed a group at a time (GROUP_BYTES of float32); each group runs over the activations in chunks of
        // MC_BLOCKS row blocks, k-slice by k-slice, so that a chunk's slice (192 rows x KC) stays in L2 across the
        // group's panels instead of streaming all n rows from L3 or memory once per panel
        // (only where the packed activations outgrow the last-level cache: below that, one panel at a time over all
        // rows, its slice in L1, measured faster)
        boolean chunked = 4L * blocks * MR * in > chunkAboveBytes;
        int group = chunked ? (int) Math.max(1, Math.min(panels, GROUP_BYTES / (4L * in * NR))) : 1;
        int mcBlocks = chunked ? MC_BLOCKS : blocks;
        int chunkRows = Math.min(blocks, mcBlocks) * MR;
        Parallel.Range body = (p0, p1) -> {
            int gmax = Math.min(group, p1 - p0);
            float[] panel = PANEL.get(), strips = STRIPS.get(), row = new float[KC + BLK], tile = new float[MR * NR];
            if (panel.length < gmax * in * NR) PANEL.set(panel = new float[gmax * in * NR]);
            if (strips.length < gmax * chunkRows * NR) STRIPS.set(strips = new float[gmax * chunkRows * NR]);
            for (int g0 = p0; g0 < p1; g0 += group) {
                int g1 = Math.min(p1, g0 + group);
                for (int p = g0; p < g1; p++) {
                    int j0 = pj[p], cols = Math.min(NR, outs[pm[p]] - j0), base = (p - g0) * in * NR;
                    for (int k0 = 0; k0 < in; k0 += KC) packB(rowsOf[pm[p]], j0, cols, k0, Math.min(KC, in - k0), panel, base + k0 * NR, row, useNative);
                }
                for (int rb0 = 0; rb0 < blocks; rb0 += mcBlocks) {
                    int rb1 = Math.min(blocks, rb0 + mcBlocks), r0 = rb0 * MR, rn = Math.min(n, rb1 * MR) - r0;
                    // each panel's rows of this chunk accumulate over the k-slices in a contiguous strip (rows NR
                    // apart), copied into y once: y's rows are out apart, and k-slice after k-slice of loads and
                    // stores into a 32-column strip of them cost ~12% of the GEMM (rows 44 KB apart at out = 11008)
                    for (int k0 = 0; k0 < in; k0 += KC) {
                        int kc = Math.min(KC, in - k0);
                        boolean accumulate = k0 > 0;
                        for (int p = g0; p < g1; p++) {
                            int cols = Math.min(NR, outs[pm[p]] - pj[p]), po = (p - g0) * in * NR + k0 * NR;
                            int so = (p - g0) * chunkRows * NR;
                            if (useNative) NativeKernels.gemmPanel(a, r0 * in, 0, rb1 - rb0, in, k0, kc, panel, po, strips, so, rn, NR, 0, cols, accumulate);
                            else panelBlocks(a, r0 * in, rb1 - rb0, in, k0, kc, panel, po, strips, so, rn, cols, accumulate, tile);
                        }
                    }
                    for (int p = g0; p < g1; p++) {
                        int out = outs[pm[p]], j0 = pj[p], cols = Math.min(NR, out - j0), so = (p - g0) * chunkRows * NR;
                        float[] y = ys[pm[p]];
                        for (int i = 0; i < rn; i++) System.arraycopy(strips, so + i * NR, y, (r0 + i) * out + j0, cols);
                    }
                }
            }
        };
        if (GUIDED) Parallel.forRangeGuided(panels, group, body);
        else Parallel.forRange(panels, 1, body);
    }

    /**
     * Row blocks [0, blocks) of one panel's k-slice with the Vector API kernel, the activation blocks from {@code a[ab..]},
     * into a strip {@code s[so + row * NR + c]} of {@code rn} rows (a partial block or panel via the tile).
     */
    private static void panelBlocks(float[] a, int ab, int blocks, int in, int k0, int kc, float[] panel, int po, float[] s, int so,
                                    int rn, int cols, boolean accumulate, float[] tile) {
        for (int b = 0; b < blocks; b++) {
            int i0 = b * MR, r = Math.min(MR, rn - i0), ao = ab + b * MR * in + k0 * MR;
            if (r == MR && cols == NR) {
                kernel(a, ao, panel, po, kc, s, so + i0 * NR, NR, accumulate);
            } else {
                kernel(a, ao, panel, po, kc, tile, 0, NR, false);
                for (int i = 0; i < r; i++) {
                    int yo = so + (i0 + i) * NR;
                    for (int c = 0; c < cols; c++) s[yo + c] = (accumulate ? s[yo + c] : 0f) + tile[i * NR + c];
                }
            }
        }
    }

    /** ap[(b * in + k) * MR + i] = x[b * MR + i, k] (zero for rows past n). */
    private static void packA(float[] x, int n, int in, int b, float[] ap) {
        int base = b * MR * in;
        for (int i = 0; i < MR; i++) {
            int row = b * MR + i;
            if (row < n) for (int k = 0, xo = row * in; k < in; k++) ap[base + k * MR + i] = x[xo + k];
            else for (int k = 0; k < in; k++) ap[base + k * MR + i] = 0f;
        }
    }

    /** A weight matrix with its quantization offsets resolved once per call. */
    record WeightRows(Tensor w, int in, DType dt, MemorySegment m, int nb, int qb, long so) {
        WeightRows(Tensor w, int in) {
            this(w, in, w.dtype(), w.data(), Quant.blocksPerRow(in), w.dtype().isQuantized() ? Quant.blockBytes(w.dtype()) : 0,
                    w.dtype().isQuantized() ? Quant.scalesOffset(w.dtype(), w.shape()) : 0);
        }
    }

    /** panel[po + kk * NR + c] = w[j0 + c, k0 + kk] as float32, zero for c >= cols (in C where the native kernels run). */
    private static void packB(WeightRows w, int j0, int cols, int k0, int kc, float[] panel, int po, float[] row, boolean useNative) {
        if (useNative && (w.dt == DType.F32 || w.dt == DType.BF16 || w.dt == DType.Q8_0)) {
            NativeKernels.gemmPack(w.dt, w.m, w.so, w.in, w.nb, w.w.dim(0), j0, cols, k0, kc, panel, po);
            return;
        }
        if (cols < NR) java.util.Arrays.fill(panel, po, po + kc * NR, 0f);
        for (int c = 0; c < cols; c++) {
            if (w.dt == DType.Q8_0 || w.dt == DType.Q4_0) MatMul.quantRowSlice(w.m, w.dt == DType.Q8_0, w.nb, w.qb, w.so, j0 + c, k0, kc, row);
            else MatMul.rowSlice(w.w, w.in, j0 + c, k0, kc, row);
            for (int kk = 0; kk < kc; kk++) panel[po + kk * NR + c] = row[kk];
        }
    }

    /** c[6 rows, NR cols] (+)= a[k-major 6-row micro-panel, kc] * panel[kc, NR]; rows of c are ldc apart. */
    private static void kernel(float[] a, int ao, float[] p, int po, int kc, float[] c, int co, int ldc, boolean acc) {
        FloatVector c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        int y0 = co, y1 = y0 + ldc, y2 = y1 + ldc, y3 = y2 + ldc, y4 = y3 + ldc, y5 = y4 + ldc;
        if (acc) {
            c00 = FloatVector.fromArray(F, c, y0); c01 = FloatVector.fromArray(F, c, y0 + L);
            c10 = FloatVector.fromArray(F, c, y1); c11 = FloatVector.fromArray(F, c, y1 + L);
            c20 = FloatVector.fromArray(F, c, y2); c21 = FloatVector.fromArray(F, c, y2 + L);
            c30 = FloatVector.fromArray(F, c, y3); c31 = FloatVector.fromArray(F, c, y3 + L);
            c40 = FloatVector.fromArray(F, c, y4); c41 = FloatVector.fromArray(F, c, y4 + L);
            c50 = FloatVector.fromArray(F, c, y5); c51 = FloatVector.fromArray(F, c, y5 + L);
        } else {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = FloatVector.zero(F);
        }
        for (int k = 0; k < kc; k++) {
            FloatVector w0 = FloatVector.fromArray(F, p, po + k * NR), w1 = FloatVector.fromArray(F, p, po + k * NR + L);
            int o = ao + k * MR;
            FloatVector b = FloatVector.broadcast(F, a[o]);
            c00 = w0.fma(b, c00); c01 = w1.fma(b, c01);
            b = FloatVector.broadcast(F, a[o + 1]);
            c10 = w0.fma(b, c10); c11 = w1.fma(b, c11);
            b = FloatVector.broadcast(F, a[o + 2]);
            c20 = w0.fma(b, c20); c21 = w1.fma(b, c21);
            b = FloatVector.broadcast(F, a[o + 3]);
            c30 = w0.fma(b, c30); c31 = w1.fma(b, c31);
            b = FloatVector.broadcast(F, a[o + 4]);
            c40 = w0.fma(b, c40); c41 = w1.fma(b, c41);
            b = FloatVector.broadcast(F, a[o + 5]);
            c50 = w0.fma(b, c50); c51 = w1.fma(b, c51);
        }
        c00.intoArray(c, y0); c01.intoArray(c, y0 + L);
        c10.intoArray(c, y1); c11.intoArray(c, y1 + L);
        c20.intoArray(c, y2); c21.intoArray(c, y2 + L);
        c30.intoArray(c, y3); c31.intoArray(c, y3 + L);
        c40.intoArray(c, y4); c41.intoArray(c, y4 + L);
        c50.intoArray(c, y5); c51.intoArray(c, y5 + L);
    }
}
