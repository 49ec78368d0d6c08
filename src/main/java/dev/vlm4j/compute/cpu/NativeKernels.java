package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.foreign.ValueLayout;
import java.lang.invoke.MethodHandle;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Locale;
import java.util.Set;

/**
 * The few CPU kernels that Java cannot express at full speed, from {@code src/main/c/vlm4j_cpu.c} (built by
 * {@code scripts/build-native.sh}, carried in the jar for linux-x86_64) and called through the FFM API.
 * <p>The matrix-vector products of decoding, with a software prefetch so that the weights stream near the read
 * bandwidth (the Vector API has no prefetch; see the C file): bf16 weights against one activation row, the same
 * sums in the same order as {@code GemvBf16}'s one-row kernel (bit-identical); Q8_0 weights against up to 4 rows at
 * a time, either with float activations (the sums of {@code Gemv.dot4Q8} up to the final lane reduction) or, where
 * the CPU has AVX512-VNNI and {@code Gemv.vnniQ8} is on (the default), with activations quantized per 32-block to two
 * 8-bit digits and integer dot products.
 * <p>Used when the OS is Linux on x86-64, the CPU has AVX-512F/BW/VL, F16C and FMA, and neither
 * {@code -Dvlm4j.native=false} nor {@code VLM4J_NATIVE=0} is set; otherwise the Vector API kernels run and
 * {@link #status()} says why. {@code -Dvlm4j.prefetch=BYTES} sets the prefetch distance (default 4096, 0 = none);
 * {@code -Dvlm4j.prefetchL2=BYTES} the decode kernels' second, longer one into L2 (default {@link #prefetchL2(long)}).
 */
public final class NativeKernels {
    static final String RESOURCE = "/native/linux-x86_64/libvlm4j_cpu.so";
    private static final int ABI = 13;
    /** Prefetch distance in bytes ahead of the weight row being read. */
    static final long PREFETCH = Long.getLong("vlm4j.prefetch", 4096);
    private static final long PREFETCH_L2 = Long.getLong("vlm4j.prefetchL2", -1);

    /**
     * The decode kernels' (Q8_0 and bf16) second prefetch distance, into L2, for weight rows of {@code rowBytes}: 16 KiB
     * for rows up to 4 KiB (a 3B model's hidden-width matrices: q/k/v/o/gate/up, and its bf16 LM head), 8 KiB for
     * longer ones; {@code -Dvlm4j.prefetchL2} overrides both (0: none). Measured in docs/BENCHMARKS.md, section "Guided
     * decode regions, fused SwiGLU, a second prefetch into L2, GEMM output strips".
     */
    static long prefetchL2(long rowBytes) {
        return PREFETCH_L2 >= 0 ? PREFETCH_L2 : rowBytes <= 4096 ? 16384 : 8192;
    }

    private static final MethodHandle Q8_GEMV, BF16_ROWS, Q8_QUANTIZE, Q8_VNNI, GEMM_PANEL, GEMM_PACK, ATTENTION, TRANSPOSE, FMA_PEAK, READ_SUM;
    private static final String STATUS;

    static {
        MethodHandle q8 = null, bf = null, qz = null, vn = null, gp = null, gk = null, at = null, tr = null, fp = null, rs = null;
        String status;
        try {
            String why = unsupportedReason();
            if (why != null) {
                status = "off (" + why + ")";
            } else {
                SymbolLookup lib = load();
                Linker linker = Linker.nativeLinker();
                MethodHandle abi = linker.downcallHandle(lib.find("vlm4j_cpu_abi").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_INT));
                int v = (int) abi.invokeExact();
                if (v != ABI) throw new IllegalStateException("library interface " + v + ", expected " + ABI);
                // x, n, pin, q, s, nb, j0, j1, out, y, pf, pf2; x and y are heap arrays (critical: no copies, short calls).
                q8 = linker.downcallHandle(lib.find("vlm4j_q8_0_gemv").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG),
                        Linker.Option.critical(true));
                // x, xo, kv, w, in, count, y, yo, pf, pf2
                bf = linker.downcallHandle(lib.find("vlm4j_bf16_rows").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                                ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG,
                                ValueLayout.JAVA_LONG),
                        Linker.Option.critical(true));
                // a, b0, b1, in, k0, kc, panel, po, y, n, out, j0, cols, acc (a, panel, y heap arrays)
                gp = linker.downcallHandle(lib.find("vlm4j_gemm_panel").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_INT,
                                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT),
                        Linker.Option.critical(true));
                // dt, w, so, in, nb, j0, cols, k0, kc, panel, po (w a heap or native segment, panel a heap array)
                gk = linker.downcallHandle(lib.find("vlm4j_gemm_pack").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT,
                                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                ValueLayout.ADDRESS, ValueLayout.JAVA_INT),
                        Linker.Option.critical(true));
                // q, kt, ld, v, w, d, lo, hi, out (heap arrays)
                at = linker.downcallHandle(lib.find("vlm4j_attention").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                                ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS),
                        Linker.Option.critical(true));
                // src, rows, stride, cols, dst, ld (heap arrays)
                tr = linker.downcallHandle(lib.find("vlm4j_transpose_rows").orElseThrow(),
                        FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT,
                                ValueLayout.ADDRESS, ValueLayout.JAVA_LONG),
                        Linker.Option.critical(true));
                fp = linker.downcallHandle(lib.find("vlm4j_fma_peak").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_FLOAT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_FLOAT));
                // a native address, bytes, prefetch distances into L1 and L2 (no heap arrays: not critical)
                rs = linker.downcallHandle(lib.find("vlm4j_read_sum").orElseThrow(),
                        FunctionDescriptor.of(ValueLayout.JAVA_FLOAT, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG,
                                ValueLayout.JAVA_LONG));
                if (cpuFlags().contains("avx512_vnni")) {
                    qz = linker.downcallHandle(lib.find("vlm4j_q8_quantize_rows").orElseThrow(),
                            FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS,
                                    ValueLayout.ADDRESS, ValueLayout.ADDRESS), Linker.Option.critical(true));
                    // xq, c1, xd, n, pin, q, s, nb, j0, j1, out, y, pf
                    vn = linker.downcallHandle(lib.find("vlm4j_q8_0_gemv_vnni").orElseThrow(),
                            FunctionDescriptor.ofVoid(ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.ADDRESS, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                    ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG, ValueLayout.JAVA_INT, ValueLayout.JAVA_INT,
                                    ValueLayout.JAVA_INT, ValueLayout.JAVA_INT, ValueLayout.ADDRESS, ValueLayout.JAVA_LONG, ValueLayout.JAVA_LONG),
                            Linker.Option.critical(true));
                }
                status = "on (AVX-512, prefetch " + PREFETCH + " bytes, L2 " + (PREFETCH_L2 >= 0 ? PREFETCH_L2 + " bytes" : "16/8 KiB") + (vn == null ? "" : Gemv.vnniQ8
                        ? "; Q8_0 x 2x8-bit activations with VNNI" : "; VNNI off: -Dvlm4j.q8.vnni=false") + ")";
            }
        } catch (Throwable t) {
            q8 = null;
            bf = null;
            qz = null;
            vn = null;
            gp = null;
            gk = null;
            at = null;
            tr = null;
            fp = null;
            rs = null;
            status = "off (could not load " + RESOURCE + ": " + t + ")";
            System.err.println("vlm4j: WARNING: native CPU kernels unavailable, using the Vector API ones: " + t);
        }
        Q8_GEMV = q8;
        BF16_ROWS = bf;
        Q8_QUANTIZE = qz;
        Q8_VNNI = vn;
        GEMM_PANEL = gp;
        GEMM_PACK = gk;
        ATTENTION = at;
        TRANSPOSE = tr;
        FMA_PEAK = fp;
        READ_SUM = rs;
        STATUS = status;
    }

    private NativeKernels() {}

    /** Whether the native Q8_0 matrix-vector kernel is in use. */
    public static boolean q8Available() { return Q8_GEMV != null; }

    /** Whether this CPU can run the 8-bit-activation VNNI kernels ({@link #q8Quantize}, {@link #q8GemvVnni}); see {@code Gemv.vnniQ8}. */
    public static boolean q8VnniAvailable() { return Q8_VNNI != null; }

    /**
     * Quantizes n zero-padded activation rows of pin floats per 32-block into two signed 8-bit digits each,
     * {@code x / d = q1 + q2 / 256}: {@code xq[r * pin + k] = q1}, {@code xq[(n + r) * pin + k] = q2},
     * {@code xd[r * nb + b] = d = max|x| / 127} of the block, and the terms that remove the kernel's +128 weight
     * offset: {@code c1[r * pin / 4 + l] = -128 * (q1 summed over int32 lane l)}, {@code xd[(n + r) * nb + b] = 128 *
     * (q2 summed over block b)}. Sizes: xq 2 n pin, c1 n pin / 4, xd 2 n nb.
     */
    static void q8Quantize(float[] x, int n, int pin, byte[] xq, int[] c1, float[] xd) {
        if (x.length < (long) n * pin || xq.length < 2L * n * pin || c1.length < (long) n * pin / 4 || xd.length < 2L * n * (pin / 32)
                || pin % 32 != 0)
            throw new IllegalArgumentException("q8Quantize: bad shapes n=" + n + " pin=" + pin);
        try {
            Q8_QUANTIZE.invokeExact(MemorySegment.ofArray(x), n, pin, MemorySegment.ofArray(xq), MemorySegment.ofArray(c1), MemorySegment.ofArray(xd));
        } catch (Throwable t) {
            throw new IllegalStateException("native Q8 quantization failed", t);
        }
    }

    /** As {@link #q8Gemv} with activation rows from {@link #q8Quantize}: integer block dot products, scaled in float32. */
    static void q8GemvVnni(byte[] xq, int[] c1, float[] xd, int n, int pin, long q, long s, int nb, int j0, int j1, int out, float[] y) {
        if (xq.length < 2L * n * pin || c1.length < (long) n * pin / 4 || xd.length < 2L * n * nb || y.length < (long) (n - 1) * out + j1
                || j0 < 0 || j1 > out || nb * 32 != pin)
            throw new IllegalArgumentException("q8GemvVnni: bad shapes n=" + n + " pin=" + pin + " nb=" + nb + " rows " + j0 + ".." + j1 + " of " + out);
        try {
            Q8_VNNI.invokeExact(MemorySegment.ofArray(xq), MemorySegment.ofArray(c1), MemorySegment.ofArray(xd), n, pin, q, s, nb, j0, j1, out,
                    MemorySegment.ofArray(y), PREFETCH, prefetchL2(pin));
        } catch (Throwable t) {
            throw new IllegalStateException("native Q8_0 VNNI kernel failed", t);
        }
    }

    /** Whether the native FMA peak loop ({@link #fmaPeak}) is available. */
    public static boolean fmaPeakAvailable() { return FMA_PEAK != null; }

    /** Runs {@code iters} rounds of 12 independent 16-lane FMAs (384 FLOP a round) on the calling thread. */
    static float fmaPeak(long iters, float seed) {
        try {
            return (float) FMA_PEAK.invokeExact(iters, seed);
        } catch (Throwable t) {
            throw new IllegalStateException("native FMA probe failed", t);
        }
    }

    /** Whether the native read probe ({@link #readSum}) is available. */
    public static boolean readSumAvailable() { return READ_SUM != null; }

    /**
     * Sums {@code bytes} (a multiple of 256) of floats from native address {@code p}, prefetching {@code pf} bytes ahead
     * into L1 and {@code pf2} ahead into L2 (0: none).
     */
    static float readSum(long p, long bytes, long pf, long pf2) {
        if ((bytes & 255) != 0) throw new IllegalArgumentException("readSum: " + bytes + " bytes is not a multiple of 256");
        try {
            return (float) READ_SUM.invokeExact(p, bytes, pf, pf2);
        } catch (Throwable t) {
            throw new IllegalStateException("native read probe failed", t);
        }
    }

    /** Whether the native GEMM micro-kernel ({@link #gemmPanel}) is in use. */
    public static boolean gemmAvailable() { return GEMM_PANEL != null; }

    /**
     * One 32-column panel and one k-slice of {@code Gemm.gemm} over the row blocks [b0, b1): {@code y[yo + n x out]} (+)=
     * the packed activations from {@code a[ao..]} (blocks of 6 rows, {@code a[ao + ((b * in) + k) * 6 + i]}) times
     * {@code panel[po + kk * 32 + j]}, {@code kk < kc}, for columns {@code [j0, j0 + cols)}; bit-identical to Gemm's
     * Vector API kernel.
     */
    static void gemmPanel(float[] a, int ao, int b0, int b1, int in, int k0, int kc, float[] panel, int po, float[] y, int yo, int n,
                          int out, int j0, int cols, boolean acc) {
        if (ao < 0 || ao + (long) b1 * 6 * in > a.length || b0 < 0 || b0 > b1 || po + (long) kc * 32 > panel.length
                || yo < 0 || yo + (long) n * out > y.length || b0 * 6 >= Math.max(1, n) && b1 > b0 || k0 + kc > in || cols > 32
                || j0 + cols > out || cols <= 0 || kc <= 0)
            throw new IllegalArgumentException("gemmPanel: bad shapes blocks " + b0 + ".." + b1 + " in=" + in + " k0=" + k0 + " kc=" + kc
                    + " po=" + po + " n=" + n + " out=" + out + " j0=" + j0 + " cols=" + cols + " ao=" + ao + " yo=" + yo);
        try {
            GEMM_PANEL.invokeExact(MemorySegment.ofArray(a).asSlice(4L * ao), b0, b1, in, k0, kc, MemorySegment.ofArray(panel), po,
                    MemorySegment.ofArray(y).asSlice(4L * yo), n, out, j0, cols, acc ? 1 : 0);
        } catch (Throwable t) {
            throw new IllegalStateException("native GEMM kernel failed", t);
        }
    }

    /**
     * Packs one panel slice for {@link #gemmPanel}: {@code panel[po + kk * 32 + c] = w[j0 + c, k0 + kk]} as float32 for
     * {@code kk < kc}, {@code c < cols}, zero for the columns past cols; the same values as {@code Gemm.packB}. w holds
     * f32 or bf16 rows of {@code in} values, or a Q8_0 matrix ({@code nb} 32-byte quant blocks per row, then f16 scales
     * at byte {@code so}; k0 a multiple of 32). {@code rows} is w's number of rows.
     */
    static void gemmPack(DType dt, MemorySegment w, long so, int in, int nb, long rows, int j0, int cols, int k0, int kc, float[] panel, int po) {
        int code = switch (dt) { case F32 -> 0; case BF16 -> 1; case Q8_0 -> 2; default -> -1; };
        long need = switch (code) {
            case 0 -> 4L * rows * in;
            case 1 -> 2L * rows * in;
            default -> Math.max(so + 2L * rows * nb, rows * nb * 32L);
        };
        if (code < 0 || j0 < 0 || cols <= 0 || cols > 32 || j0 + cols > rows || k0 < 0 || kc <= 0 || k0 + kc > in || po < 0
                || po + 32L * kc > panel.length || w.byteSize() < need || code == 2 && (k0 % 32 != 0 || (long) nb * 32 < in))
            throw new IllegalArgumentException("gemmPack: bad shapes " + dt + " rows=" + rows + " in=" + in + " j0=" + j0 + " cols=" + cols
                    + " k0=" + k0 + " kc=" + kc + " po=" + po + " bytes=" + w.byteSize());
        try {
            // a native segment goes by address: a mapped checkpoint's shared session would otherwise be acquired and
            // released by every call from every worker (contended atomics, ~2% of a prefill's samples)
            MemorySegment ws = w.isNative() ? MemorySegment.ofAddress(w.address()) : w;
            GEMM_PACK.invokeExact(code, ws, so, in, nb, j0, cols, k0, kc, MemorySegment.ofArray(panel), po);
        } catch (Throwable t) {
            throw new IllegalStateException("native GEMM packing failed", t);
        }
    }

    /** Queries per call of {@link #attention}. */
    static final int ATTENTION_QUERIES = 8;

    /** Whether the native attention kernel ({@link #attention}) is loaded. */
    public static boolean attentionAvailable() { return ATTENTION != null && TRANSPOSE != null; }

    /**
     * Online-softmax attention of {@link #ATTENTION_QUERIES} query rows ({@code q}, d floats each, already scaled) over
     * keys [lo, hi) of one KV head: {@code kt[c * ld + j]} the head's keys transposed (readable to {@code j < hi + 32}),
     * {@code v[j * w + vo ..]} its value rows; {@code out} gets the normalised rows. d a multiple of 16, at most 256.
     */
    static void attention(float[] q, float[] kt, int kto, int ld, float[] v, int vo, int w, int d, int lo, int hi, float[] out) {
        int nq = ATTENTION_QUERIES;
        if (d % 16 != 0 || d > 256 || d <= 0 || lo < 0 || hi <= lo || q.length < nq * d || out.length < nq * d
                || kto < 0 || kto + (long) (d - 1) * ld + hi + 32 > kt.length || vo < 0 || vo + (long) (hi - 1) * w + d > v.length)
            throw new IllegalArgumentException("attention: bad shapes d=" + d + " keys " + lo + ".." + hi + " ld=" + ld + " w=" + w);
        try {
            ATTENTION.invokeExact(MemorySegment.ofArray(q), MemorySegment.ofArray(kt).asSlice(4L * kto), ld,
                    MemorySegment.ofArray(v).asSlice(4L * vo), w, d, lo, hi, MemorySegment.ofArray(out));
        } catch (Throwable t) {
            throw new IllegalStateException("native attention kernel failed", t);
        }
    }

    /**
     * {@code dst[dso + c * ld + j] = src[so + j * stride + c]} for j < rows, c < cols (a multiple of 16): one attention
     * head's keys transposed for {@link #attention}. Rows go in whole blocks of 16 (zeros past rows), so ld must be at
     * least rows rounded up to 16.
     */
    static void transposeRows(float[] src, int so, int rows, int stride, int cols, float[] dst, int dso, int ld) {
        int rows16 = (rows + 15) / 16 * 16;
        if (cols % 16 != 0 || cols <= 0 || rows <= 0 || ld < rows16 || so < 0 || dso < 0 || so + (long) (rows - 1) * stride + cols > src.length
                || dso + (long) (cols - 1) * ld + rows16 > dst.length)
            throw new IllegalArgumentException("transposeRows: bad shapes rows=" + rows + " cols=" + cols + " stride=" + stride + " ld=" + ld);
        try {
            TRANSPOSE.invokeExact(MemorySegment.ofArray(src).asSlice(4L * so), rows, (long) stride, cols,
                    MemorySegment.ofArray(dst).asSlice(4L * dso), (long) ld);
        } catch (Throwable t) {
            throw new IllegalStateException("native transpose failed", t);
        }
    }

    /** Whether the native bf16 one-row kernel is in use. */
    public static boolean bf16Available() { return BF16_ROWS != null; }

    /**
     * {@code y[yo + i]} for i in [0, count) (a multiple of 4) = the vector part ({@code k < kv}, kv a multiple of 16) of
     * {@code x[xo ..] . w[i, ..]}, w bf16 rows of {@code in} values from native address {@code w}, summed exactly as
     * {@code GemvBf16} sums (one 16-lane accumulator in k order, then its lane tree).
     */
    static void bf16Rows(float[] x, int xo, int kv, long w, int in, int count, float[] y, int yo) {
        if ((count & 3) != 0 || (kv & 15) != 0 || kv > in || xo + kv > x.length || yo + count > y.length || xo < 0 || yo < 0)
            throw new IllegalArgumentException("bf16Rows: bad shapes xo=" + xo + " kv=" + kv + " in=" + in + " count=" + count
                    + " yo=" + yo + " x.length=" + x.length + " y.length=" + y.length);
        try {
            BF16_ROWS.invokeExact(MemorySegment.ofArray(x), xo, kv, w, (long) in, count, MemorySegment.ofArray(y), yo, PREFETCH, prefetchL2(2 * in));
        } catch (Throwable t) {
            throw new IllegalStateException("native bf16 kernel failed", t);
        }
    }

    /** "on (...)" or "off (why)", for logs and {@code vlm4j bench}. */
    public static String status() { return STATUS; }

    /**
     * {@code y[r * out + j] = sum_k x[r * pin + k] * w[j, k]} for r in [0, n), j in [j0, j1), w a Q8_0 matrix whose
     * quant rows (pin bytes each, zero-padded to whole blocks) start at native address {@code q} and whose f16 block
     * scales (nb per row) start at {@code s}. x holds n zero-padded rows of pin floats.
     */
    static void q8Gemv(float[] x, int n, int pin, long q, long s, int nb, int j0, int j1, int out, float[] y) {
        if (x.length < (long) n * pin || y.length < (long) (n - 1) * out + j1 || j0 < 0 || j1 > out || nb * 32 != pin)
            throw new IllegalArgumentException("q8Gemv: bad shapes n=" + n + " pin=" + pin + " nb=" + nb + " rows " + j0 + ".." + j1
                    + " of " + out + " x.length=" + x.length + " y.length=" + y.length);
        try {
            Q8_GEMV.invokeExact(MemorySegment.ofArray(x), n, pin, q, s, nb, j0, j1, out, MemorySegment.ofArray(y), PREFETCH, prefetchL2(pin));
        } catch (Throwable t) {
            throw new IllegalStateException("native Q8_0 kernel failed", t);
        }
    }

    /** Null when this machine can run the library, else the reason it cannot. */
    private static String unsupportedReason() throws IOException {
        if ("false".equalsIgnoreCase(System.getProperty("vlm4j.native")) || "0".equals(System.getenv("VLM4J_NATIVE")))
            return "disabled by -Dvlm4j.native=false or VLM4J_NATIVE=0";
        String os = System.getProperty("os.name", "").toLowerCase(Locale.ROOT), arch = System.getProperty("os.arch", "");
        if (!os.contains("linux") || !(arch.equals("amd64") || arch.equals("x86_64")))
            return "no library for " + os + "/" + arch;
        if (!Files.isReadable(Path.of("/proc/cpuinfo"))) return "/proc/cpuinfo not readable";
        Set<String> flags = cpuFlags();
        for (String need : new String[] {"avx512f", "avx512bw", "avx512vl", "f16c", "fma"})
            if (!flags.contains(need)) return "the CPU lacks " + need;
        return null;
    }

    /** The first CPU's flags in /proc/cpuinfo (empty when unreadable). */
    private static Set<String> cpuFlags() {
        try {
            for (String line : Files.readAllLines(Path.of("/proc/cpuinfo")))
                if (line.startsWith("flags")) return Set.of(line.substring(line.indexOf(':') + 1).trim().split("\\s+"));
        } catch (IOException e) {
            return Set.of();
        }
        return Set.of();
    }

    /** Copies the library out of the jar into a temporary file, opens it, and deletes the file (it stays mapped). */
    private static SymbolLookup load() throws IOException {
        try (InputStream in = NativeKernels.class.getResourceAsStream(RESOURCE)) {
            if (in == null) throw new IOException("resource " + RESOURCE + " missing from the class path");
            Path tmp = Files.createTempFile("vlm4j_cpu", ".so");
            try {
                Files.copy(in, tmp, StandardCopyOption.REPLACE_EXISTING);
                return SymbolLookup.libraryLookup(tmp, Arena.global());
            } finally {
                Files.deleteIfExists(tmp);
            }
        }
    }
}
