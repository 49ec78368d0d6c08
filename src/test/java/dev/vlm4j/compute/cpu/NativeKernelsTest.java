package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;

import static org.junit.jupiter.api.Assertions.*;

/** The native Q8_0 kernel against the Vector API one (the same sums) and its source against the library built from it. */
class NativeKernelsTest {

    @Test
    void libraryWasBuiltFromTheCurrentSource() throws Exception {
        Path src = Path.of("src/main/c/vlm4j_cpu.c"), rec = Path.of("src/main/resources/native/linux-x86_64/libvlm4j_cpu.so.source-sha256");
        Assumptions.assumeTrue(Files.exists(src), "not run from the project folder");
        String sha = HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(src)));
        assertEquals(Files.readString(rec).trim(), sha,
                src + " changed since libvlm4j_cpu.so was built: run scripts/build-native.sh and commit both files");
    }

    @Test
    void loadsOnAnAvx512Linux() throws Exception {
        String info = Files.isReadable(Path.of("/proc/cpuinfo")) ? Files.readString(Path.of("/proc/cpuinfo")) : "";
        String flags = info.lines().filter(l -> l.startsWith("flags")).findFirst().orElse("") + " ";
        boolean avx512 = java.util.stream.Stream.of("avx512f", "avx512bw", "avx512vl", "f16c", "fma").allMatch(f -> flags.contains(" " + f + " "))
                && System.getProperty("os.arch").equals("amd64") && !"0".equals(System.getenv("VLM4J_NATIVE"))
                && !"false".equals(System.getProperty("vlm4j.native"));
        Assumptions.assumeTrue(avx512, "no AVX-512 Linux here: " + NativeKernels.status());
        assertTrue(NativeKernels.q8Available(), NativeKernels.status());
        assertTrue(NativeKernels.status().startsWith("on"), NativeKernels.status());
    }

    @ParameterizedTest
    @CsvSource({"1,32,1", "1,64,4", "1,2048,517", "2,2048,9", "3,3420,37", "4,3456,8", "5,100,6", "7,3420,13", "9,1176,65",
            "15,64,5", "1,11008,64", "2,96,3"})
    void q8GemvEqualsTheVectorKernel(int n, int in, int out) {
        Assumptions.assumeTrue(NativeKernels.q8Available(), NativeKernels.status());
        Tensor w = Quant.quantize(Tensor.of(CpuKernelsTest.randn(out * in, 11, 0.02f), out, in), DType.Q8_0);
        float[] x = CpuKernelsTest.randn(n * in, 12, 1f);
        float[] vec;
        try {
            Gemv.nativeQ8 = false;
            vec = MatMul.linear(x, n, in, w, null);
        } finally {
            Gemv.nativeQ8 = true;
        }
        float[] nat;
        boolean was = Gemv.vnniQ8;
        try {
            Gemv.vnniQ8 = false;
            nat = MatMul.linear(x, n, in, w, null);
        } finally {
            Gemv.vnniQ8 = was;
        }
        double worst = 0;
        int at = -1;
        for (int r = 0; r < n; r++)
            for (int j = 0; j < out; j++) {
                // the same products and block sums; only the final 16-lane reduction may associate differently, so the
                // difference is float32 rounding: bounded by a few ulps of sum_k |x_k * w_jk|
                double l1 = 0;
                for (int k = 0; k < in; k++) l1 += Math.abs(x[r * in + k] * w.getFloat((long) j * in + k));
                int i = r * out + j;
                double d = Math.abs(vec[i] - nat[i]) / l1;
                if (d > worst) { worst = d; at = i; }
            }
        assertTrue(worst <= 1e-6, "n=" + n + " in=" + in + " out=" + out + ": native differs from the Vector API kernel by "
                + worst + " of sum|x*w| at " + at + ": " + (at < 0 ? "" : vec[at] + " vs " + nat[at]));
    }

    /**
     * The fused gated MLP product (decode): for float and 8-bit activations alike, each output is bit for bit the one
     * of the two products followed by the SiLU product, whatever pieces the rows were split into.
     */
    @ParameterizedTest
    @CsvSource({"1,2048,1100,false", "1,2048,1100,true", "3,3420,37,true", "2,96,5,false", "1,11008,64,true", "4,64,9,true"})
    void fusedSwiGluEqualsProductsThenSiluMul(int n, int in, int out, boolean vnni) {
        Assumptions.assumeTrue(NativeKernels.q8Available(), NativeKernels.status());
        Assumptions.assumeTrue(!vnni || NativeKernels.q8VnniAvailable(), "no AVX512-VNNI here: " + NativeKernels.status());
        Tensor gate = Quant.quantize(Tensor.of(CpuKernelsTest.randn(out * in, 41, 0.02f), out, in), DType.Q8_0);
        Tensor up = Quant.quantize(Tensor.of(CpuKernelsTest.randn(out * in, 42, 0.02f), out, in), DType.Q8_0);
        float[] x = CpuKernelsTest.randn(n * in, 43, 1f);
        boolean was = Gemv.vnniQ8;
        try {
            Gemv.vnniQ8 = vnni;
            float[][] gu = {new float[n * out], new float[n * out]};
            assertTrue(Gemv.quantMany(x, n, in, new Tensor[]{gate, up}, gu));
            float[] want = new float[n * out];
            VectorOps.siluMul(gu[0], gu[1], want, 0, n * out);
            float[] got = new float[n * out];
            assertTrue(Gemv.swiGlu(x, n, in, gate, up, got));
            for (int i = 0; i < want.length; i++)
                if (Float.floatToRawIntBits(want[i]) != Float.floatToRawIntBits(got[i]))
                    fail("n=" + n + " in=" + in + " out=" + out + " vnni=" + vnni + ": output " + i + " is " + got[i] + ", the unfused path gives " + want[i]);
            Tensor other = Quant.quantize(Tensor.of(CpuKernelsTest.randn((out + 1) * in, 44, 0.02f), out + 1, in), DType.Q8_0);
            assertFalse(Gemv.swiGlu(x, n, in, gate, other, got), "gate and up of different shapes");
        } finally {
            Gemv.vnniQ8 = was;
        }
    }

    /**
     * With 2x8-bit activations (VNNI): each output differs from the float-activation product only by the activation
     * rounding, |sum_k w_k (x_k - xq_k)| <= sum_b 1.5 d_b / 256 * sum_{k in b} |w_k| (d_b the block's activation
     * scale), plus float32 rounding; and the integer path itself is exact: it equals the dequantized sum in double.
     */
    @ParameterizedTest
    @CsvSource({"1,32,1", "1,64,4", "1,2048,517", "2,2048,9", "3,3420,37", "4,3456,8", "5,100,6", "7,3420,13", "1,11008,64",
            "2,96,3", "1,544,5", "1,480,4"})
    void vnniErrorIsTheActivationRounding(int n, int in, int out) {
        Assumptions.assumeTrue(NativeKernels.q8VnniAvailable(), "no AVX512-VNNI here: " + NativeKernels.status());
        Tensor w = Quant.quantize(Tensor.of(CpuKernelsTest.randn(out * in, 31, 0.02f), out, in), DType.Q8_0);
        float[] x = CpuKernelsTest.randn(n * in, 32, 1f);
        x[0] = 40f;   // an outlier channel, as LLM activations have
        float[] got;
        boolean was = Gemv.vnniQ8;
        try {
            Gemv.vnniQ8 = true;
            got = MatMul.linear(x, n, in, w, null);
        } finally {
            Gemv.vnniQ8 = was;
        }
        int nb = Quant.blocksPerRow(in), pin = nb * 32;
        float[] xp = new float[n * pin];
        for (int r = 0; r < n; r++) System.arraycopy(x, r * in, xp, r * pin, in);
        byte[] xq = new byte[2 * n * pin];
        int[] c1 = new int[n * pin / 4];
        float[] xd = new float[2 * n * nb];
        NativeKernels.q8Quantize(xp, n, pin, xq, c1, xd);
        for (int r = 0; r < n; r++)
            for (int j = 0; j < out; j++) {
                double exactQ = 0, exactF = 0, bound = 0, l1 = 0;
                for (int b = 0; b < nb; b++) {
                    double blockQ = 0, wabs = 0;
                    for (int c = 0; c < 32 && b * 32 + c < in; c++) {
                        int k = b * 32 + c;
                        double wk = w.getFloat((long) j * in + k);
                        blockQ += wk * (xq[r * pin + k] + xq[(n + r) * pin + k] / 256.0);
                        exactF += wk * x[r * in + k];
                        wabs += Math.abs(wk);
                        l1 += Math.abs(wk * x[r * in + k]);
                    }
                    exactQ += blockQ * xd[r * nb + b];
                    bound += xd[r * nb + b] * 1.5 / 256 * wabs;   // the low digit's rounding, or its clamp at 127
                }
                float g = got[r * out + j];
                String at = "n=" + n + " in=" + in + " out=" + out + " row " + r + " output " + j;
                assertEquals(exactQ, g, 1e-5 * l1 + 1e-7, at + ": VNNI result against the dequantized sum");
                assertTrue(Math.abs(g - exactF) <= bound * 1.0001 + 1e-5 * l1 + 1e-7,
                        at + ": error " + Math.abs(g - exactF) + " above the activation rounding bound " + bound);
            }
    }

    @ParameterizedTest
    @CsvSource({"1,2048,16", "1,3420,37", "2,64,8", "3,3456,12", "5,2048,20", "1,16,4", "9,100,13", "1,11008,64"})
    void bf16RowsEqualTheVectorKernelExactly(int n, int in, int out) {
        Assumptions.assumeTrue(NativeKernels.bf16Available(), NativeKernels.status());
        Tensor w = CpuKernelsTest.weight("BF16N", CpuKernelsTest.randn(out * in, 21, 0.02f), out, in);
        assertTrue(w.data().isNative());
        float[] x = CpuKernelsTest.randn(n * in, 22, 1f), vec = new float[n * out], nat = new float[n * out];
        try {
            GemvBf16.nativeRows = false;
            GemvBf16.linear(x, n, in, w.data(), out, vec);
        } finally {
            GemvBf16.nativeRows = true;
        }
        GemvBf16.linear(x, n, in, w.data(), out, nat);
        for (int i = 0; i < vec.length; i++)
            assertEquals(Float.floatToRawIntBits(vec[i]), Float.floatToRawIntBits(nat[i]),
                    "n=" + n + " in=" + in + " out=" + out + " at " + i + ": Java " + vec[i] + " native " + nat[i]);
        // and a row decoded alone equals the same row inside a batch of 8 (the batch kernels stay in Java)
        float[] x8 = new float[8 * in], y8 = new float[8 * out], y1 = new float[out];
        for (int r = 0; r < 8; r++) System.arraycopy(x, 0, x8, r * in, in);
        GemvBf16.linear(x8, 8, in, w.data(), out, y8);
        GemvBf16.linear(x, 1, in, w.data(), out, y1);
        for (int j = 0; j < out; j++)
            assertEquals(Float.floatToRawIntBits(y8[5 * out + j]), Float.floatToRawIntBits(y1[j]), "batch of 8 vs alone at " + j);
    }

    /**
     * The C GEMM micro-kernel loop against the Vector API one: bit-identical outputs (the same FMAs in the same order)
     * for full and partial 6-row blocks, pairs of blocks, partial 32-column panels, several k-slices and a k tail,
     * several row chunks (200 rows) and several panel groups per worker (11008 deep). The native path also packs the
     * weight panels in C ({@code vlm4j_gemm_pack}: 16 x 16 transposes, masked k tails), so this compares that packing
     * with the Java one too, for f32, bf16 on the heap and off-heap at an odd address, and Q8_0.
     */
    @ParameterizedTest
    @CsvSource({"1,64,32", "6,256,32", "12,256,64", "13,300,45", "37,700,96", "64,1100,129", "200,520,3456", "13,11008,2048", "200,11008,700"})
    void gemmMicroKernelIsBitIdenticalToTheVectorKernel(int n, int in, int out) {
        Assumptions.assumeTrue(Gemm.NATIVE, "native GEMM kernel not loaded: " + NativeKernels.status());
        for (String kind : new String[]{"F32", "BF16", "BF16N", "Q8_0"}) {
            float[] v = CpuKernelsTest.randn(out * in, 41, 0.02f);
            Tensor w = kind.equals("Q8_0") ? Quant.quantize(Tensor.of(v, out, in), DType.Q8_0)
                    : kind.equals("F32") ? Tensor.of(v, out, in) : CpuKernelsTest.weight(kind, v, out, in);
            float[] x = CpuKernelsTest.randn(n * in, 42, 1f), vec = new float[n * out];
            Gemm.gemm(x, n, in, w, out, vec, false, Long.MAX_VALUE);
            // native, and both kernels again with the rows in chunks against groups of panels (the loop order for
            // large activations): the same FMAs per output in the same order, so every result is the same bits
            float[][] others = {new float[n * out], new float[n * out], new float[n * out]};
            Gemm.gemm(x, n, in, w, out, others[0], true, Long.MAX_VALUE);
            Gemm.gemm(x, n, in, w, out, others[1], true, 0);
            Gemm.gemm(x, n, in, w, out, others[2], false, 0);
            String[] names = {"native", "native in row chunks", "Vector API in row chunks"};
            for (int o = 0; o < others.length; o++)
                for (int i = 0; i < vec.length; i++)
                    if (Float.floatToRawIntBits(vec[i]) != Float.floatToRawIntBits(others[o][i]))
                        fail(String.format("%s n=%d in=%d out=%d: y[%d][%d] %s %s, Vector API %s", kind, n, in, out, i / out, i % out,
                                names[o], others[o][i], vec[i]));
        }
    }

    /**
     * The vectorized activation quantizer against its definition written out per element (the scalar form it
     * replaced): x / d = q1 + q2 / 256 with d = max|x| / 127, rounding half away from zero, clamping to +-127, and the
     * offset terms. Every byte and float must match: zeros, an all-zero block, -0.0, outliers, tiny values.
     */
    @ParameterizedTest
    @CsvSource({"1,32", "2,2048", "3,11008", "1,3456"})
    void activationQuantizerMatchesItsDefinition(int n, int pin) {
        Assumptions.assumeTrue(NativeKernels.q8VnniAvailable(), "VNNI kernels not loaded: " + NativeKernels.status());
        float[] x = CpuKernelsTest.randn(n * pin, 44, 1f);
        for (int i = 0; i < x.length; i += 97) x[i] *= 300;
        for (int i = 0; i < x.length; i += 331) x[i] = 0;
        if (pin >= 64) java.util.Arrays.fill(x, 32, 64, 0f);
        x[Math.min(5, x.length - 1)] = -0.0f;
        x[Math.min(6, x.length - 1)] = 1e-30f;
        int nb = pin / 32;
        byte[] xq = new byte[2 * n * pin], rq = new byte[2 * n * pin];
        int[] c1 = new int[n * pin / 4], rc = new int[n * pin / 4];
        float[] xd = new float[2 * n * nb], rd = new float[2 * n * nb];
        NativeKernels.q8Quantize(x, n, pin, xq, c1, xd);
        for (int r = 0; r < n; r++)
            for (int b = 0; b < nb; b++) {
                int o = r * pin + b * 32;
                float amax = 0;
                for (int k = 0; k < 32; k++) amax = Math.max(amax, Math.abs(x[o + k]));
                float d = amax / 127f;
                int sum2 = 0;
                for (int k = 0; k < 32; k++) {
                    int q = 0, q2 = 0;
                    if (d > 0) {
                        float t = x[o + k] / d;
                        q = Math.max(-127, Math.min(127, (int) (t < 0 ? t - 0.5f : t + 0.5f)));
                        float u = (t - (float) q) * 256f;
                        q2 = Math.max(-127, Math.min(127, (int) (u < 0 ? u - 0.5f : u + 0.5f)));
                    }
                    rq[o + k] = (byte) q;
                    rq[n * pin + o + k] = (byte) q2;
                    sum2 += q2;
                }
                for (int l = 0; l < 8; l++) rc[o / 4 + l] = -128 * (rq[o + 4 * l] + rq[o + 4 * l + 1] + rq[o + 4 * l + 2] + rq[o + 4 * l + 3]);
                rd[r * nb + b] = d;
                rd[(n + r) * nb + b] = 128f * sum2;
            }
        assertArrayEquals(rq, xq, "digits");
        assertArrayEquals(rc, c1, "first-digit offsets");
        for (int i = 0; i < rd.length; i++)
            assertEquals(Float.floatToRawIntBits(rd[i]), Float.floatToRawIntBits(xd[i]), "scale/offset " + i + ": " + xd[i] + " vs " + rd[i]);
    }

    /** The C key transposition of the attention kernel: every element in place, whole 16-row blocks (zeros past the rows). */
    @ParameterizedTest
    @CsvSource({"1,16,16", "15,128,256", "16,16,48", "17,80,160", "50,128,256", "100,128,128"})
    void keyTranspositionIsExact(int rows, int cols, int stride) {
        Assumptions.assumeTrue(Attention.NATIVE, "native attention not loaded: " + NativeKernels.status());
        float[] src = CpuKernelsTest.randn(rows * stride + 7, 43, 1f);
        int so = stride - cols, ld = (rows + 15) / 16 * 16 + 32, dso = 5;
        float[] dst = new float[dso + cols * ld];
        java.util.Arrays.fill(dst, Float.NaN);
        NativeKernels.transposeRows(src, so, rows, stride, cols, dst, dso, ld);
        for (int c = 0; c < cols; c++)
            for (int j = 0; j < (rows + 15) / 16 * 16; j++) {
                float want = j < rows ? src[so + j * stride + c] : 0f;
                assertEquals(Float.floatToRawIntBits(want), Float.floatToRawIntBits(dst[dso + c * ld + j]), "key " + j + " column " + c);
            }
        assertTrue(Float.isNaN(dst[0]) && Float.isNaN(dst[dso + (rows + 15) / 16 * 16]), "wrote outside the blocks");
        assertThrows(IllegalArgumentException.class, () -> NativeKernels.transposeRows(src, so, rows, stride, cols, dst, dso, (rows + 15) / 16 * 16 - 1), "ld below the rows in whole blocks");
    }

    /** The native FMA peak probe runs and gives a finite positive rate (what it measures is checked by the bench, not here). */
    @Test
    void fmaPeakProbeRuns() {
        Assumptions.assumeTrue(NativeKernels.fmaPeakAvailable(), "native kernels not loaded: " + NativeKernels.status());
        assertTrue(Float.isFinite(NativeKernels.fmaPeak(1000, 1f)), "probe sum");
        assertTrue(MachineLimits.nativePeak(), "the bench uses the native probe where it is available");
        double peak = MachineLimits.peakFlops(200_000, 1);
        assertTrue(peak > 0 && Double.isFinite(peak), "peak " + peak);
    }

    /** The native read probe sums what it reads (a known buffer), with and without each prefetch. */
    @Test
    void readProbeSumsTheBuffer() {
        Assumptions.assumeTrue(NativeKernels.readSumAvailable(), "native kernels not loaded: " + NativeKernels.status());
        try (java.lang.foreign.Arena arena = java.lang.foreign.Arena.ofConfined()) {
            int n = 4096;
            java.lang.foreign.MemorySegment seg = arena.allocate(4L * n + 8192, 64);
            for (int i = 0; i < n; i++) seg.setAtIndex(java.lang.foreign.ValueLayout.JAVA_FLOAT, i, (i % 3) * 0.5f);
            double want = 0;
            for (int i = 0; i < n; i++) want += (i % 3) * 0.5f;
            for (long pf : new long[]{0, 4096})
                for (long pf2 : new long[]{0, 16384})
                    assertEquals(want, NativeKernels.readSum(seg.address(), 4L * n, pf, pf2), 1e-3, "sum with prefetches " + pf + ", " + pf2);
            assertTrue(MachineLimits.readBandwidth(64L << 20, 2) > 0, "bandwidth");
        }
    }

    @Test
    void rejectsBadShapes() {
        Assumptions.assumeTrue(NativeKernels.q8Available(), NativeKernels.status());
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class,
                () -> NativeKernels.q8Gemv(new float[10], 1, 64, 0, 0, 2, 0, 4, 4, new float[4]));
        assertTrue(e.getMessage().contains("x.length=10"), e.getMessage());
        Assumptions.assumeTrue(NativeKernels.bf16Available(), NativeKernels.status());
        assertThrows(IllegalArgumentException.class, () -> NativeKernels.bf16Rows(new float[64], 0, 64, 0, 64, 3, new float[4], 0));
    }
}
