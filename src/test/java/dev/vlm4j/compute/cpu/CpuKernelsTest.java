package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.lang.foreign.MemorySegment;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/** The Vector API kernels against the scalar reference, for every weight dtype and awkward sizes. */
class CpuKernelsTest {
    static float[] randn(int n, long seed, float std) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (r.nextGaussian() * std);
        return a;
    }

    static Tensor bf16(float[] v, long... shape) {
        short[] s = new short[v.length];
        for (int i = 0; i < v.length; i++) s[i] = (short) (Float.floatToRawIntBits(v[i]) >>> 16);
        return new Tensor(DType.BF16, shape, MemorySegment.ofArray(s), dev.vlm4j.tensor.Device.CPU);
    }

    public static Tensor weight(String dtype, float[] v, int out, int in) {
        return switch (dtype) {
            case "F32" -> Tensor.of(v, out, in);
            case "BF16" -> bf16(v, out, in);
            case "BF16N" -> { // off-heap, as memory-mapped checkpoints are (the paired bf16 kernel needs a native segment)
                Tensor h = bf16(v, out, in);
                MemorySegment m = java.lang.foreign.Arena.ofAuto().allocate(h.data().byteSize() + 2, 64).asSlice(2);
                MemorySegment.copy(h.data(), 0, m, 0, h.data().byteSize());
                yield new Tensor(DType.BF16, h.shape(), m, dev.vlm4j.tensor.Device.CPU);
            }
            default -> Quant.quantize(Tensor.of(v, out, in), DType.valueOf(dtype));
        };
    }

    static void assertNear(String what, float[] ref, float[] got, double rel) {
        assertEquals(ref.length, got.length, what);
        double scale = 0;
        for (float f : ref) scale = Math.max(scale, Math.abs(f));
        for (int i = 0; i < ref.length; i++)
            assertTrue(Math.abs(ref[i] - got[i]) <= rel * scale + 1e-6, what + " at " + i + ": " + ref[i] + " vs " + got[i]);
    }

    @ParameterizedTest
    @CsvSource({"F32,1,64,33", "BF16,1,3420,37", "BF16,5,3420,37", "BF16,13,3420,70", "Q8_0,1,3420,37", "Q8_0,3,3456,40",
            "Q8_0,13,3420,37", "Q8_0,20,1176,65", "Q4_0,1,3420,37", "Q4_0,7,100,33", "Q4_0,19,3420,70", "F32,9,300,31",
            "BF16,8,256,70", "BF16,29,3420,37", "BF16,63,300,33", "BF16,64,300,33", "BF16,3,7,9",
            "BF16N,1,3420,37", "BF16N,2,2048,64", "BF16N,3,100,9", "BF16N,1,64,3", "BF16N,5,3420,37",
            "BF16N,17,3420,37", "F32,40,300,70", "BF16,64,1280,33"})
    void linearMatchesScalarReference(String dtype, int n, int in, int out) {
        Tensor w = weight(dtype, randn(out * in, 1, 0.02f), out, in);
        float[] x = randn(n * in, 2, 1f), bias = randn(out, 3, 0.1f);
        float[] ref = ScalarKernels.linear(x, n, in, w, bias);
        float[] got;
        boolean was = Gemv.vnniQ8;
        try {
            Gemv.vnniQ8 = false;   // float activations; the 8-bit ones have their error bound in NativeKernelsTest
            got = MatMul.linear(x, n, in, w, bias);
        } finally {
            Gemv.vnniQ8 = was;
        }
        assertNear(dtype + " n=" + n + " in=" + in + " out=" + out, ref, got, 1e-4);
    }

    /**
     * Decode attention keeps a key cache transposed between steps: after appends, rewrites of earlier rows (a truncated
     * cache reused) and scattered writes, every step equals the same step on a fresh copy of the cache, bit for bit.
     */
    @Test
    void decodeKeysKeptTransposedFollowEveryWrite() {
        Assumptions.assumeTrue(Attention.NATIVE && Attention.KEYS_CACHE, "C attention or its key cache off: " + NativeKernels.status());
        dev.vlm4j.compute.Backend be = dev.vlm4j.compute.Backends.create("cpu", "bf16", 0);
        int hq = 16, hkv = 2, d = 128, w = hkv * d, cap = 40;
        Tensor k = Tensor.of(new float[cap * w], cap, w), v = Tensor.of(new float[cap * w], cap, w);
        java.util.function.IntConsumer check = len -> {
            Tensor q = Tensor.of(randn(hq * d, 500 + len, 1f), 1, hq * d);
            float[] got = be.attentionBatch(q, new Tensor[]{k}, new Tensor[]{v}, new int[]{len}, hq, hkv).heapFloats();
            Tensor fresh = Tensor.of(k.heapFloats().clone(), cap, w);
            float[] want = be.attentionBatch(q, new Tensor[]{fresh}, new Tensor[]{v}, new int[]{len}, hq, hkv).heapFloats();
            for (int i = 0; i < want.length; i++)
                if (Float.floatToRawIntBits(want[i]) != Float.floatToRawIntBits(got[i]))
                    fail("context " + len + ": output " + i + " is " + got[i] + " with the kept keys, " + want[i] + " with fresh ones");
        };
        for (int t = 0; t < 30; t++) {   // decode: one row a step
            be.copyRows(k, t, Tensor.of(randn(w, 100 + t, 1f), 1, w));
            be.copyRows(v, t, Tensor.of(randn(w, 200 + t, 1f), 1, w));
            check.accept(t + 1);
        }
        be.copyRows(k, 10, Tensor.of(randn(5 * w, 300, 1f), 5, w));   // a cache truncated to 10 and refilled
        check.accept(15);
        be.scatterRows(k, new int[]{3, 12}, Tensor.of(randn(2 * w, 301, 1f), 2, w));
        check.accept(15);
        check.accept(30);   // rows 15..29 are still the earlier ones
    }

    /** The GEMM's loop-order threshold reads the largest CPU cache from sysfs (0 where there is none). */
    @Test
    void lastLevelCacheComesFromSysfs() throws Exception {
        java.nio.file.Path l1 = java.nio.file.Path.of("/sys/devices/system/cpu/cpu0/cache/index0/size");
        long llc = Gemm.lastLevelCacheBytes();
        assertTrue(llc >= 0);
        assertTrue(Gemm.CHUNK_ABOVE_BYTES >= 16L << 20 || System.getProperty("vlm4j.gemmChunkAboveBytes") != null);
        if (!java.nio.file.Files.isReadable(l1)) return;   // not Linux sysfs: nothing more to check
        String v = java.nio.file.Files.readString(l1).trim();
        long first = Long.parseLong(v.replaceAll("[KMG]$", "")) << (v.endsWith("K") ? 10 : v.endsWith("M") ? 20 : 0);
        assertTrue(llc >= first, "largest cache " + llc + " below the first level's " + first);
    }

    @ParameterizedTest
    @CsvSource({"Q8_0,3420", "Q4_0,3420", "Q8_0,64", "Q4_0,96"})
    void quantizationErrorIsBoundedPerBlock(String dtype, int in) {
        int out = 5;
        float[] v = randn(out * in, 4, 0.02f);
        Tensor q = Quant.quantize(Tensor.of(v, out, in), DType.valueOf(dtype));
        float[] back = q.toFloatArray();
        int levels = dtype.equals("Q8_0") ? 127 : 4; // Q4_0: the clipped end (q = 15) can be off by a whole step d = amax/8
        for (int r = 0; r < out; r++)
            for (int b0 = 0; b0 < in; b0 += 32) {
                float amax = 0;
                for (int k = b0; k < Math.min(in, b0 + 32); k++) amax = Math.max(amax, Math.abs(v[r * in + k]));
                float step = amax / levels;
                for (int k = b0; k < Math.min(in, b0 + 32); k++)
                    assertTrue(Math.abs(back[r * in + k] - v[r * in + k]) <= step * 0.51 + 1e-7 * amax + step * 2e-3,
                            dtype + " element " + r + "," + k + ": " + v[r * in + k] + " -> " + back[r * in + k]);
            }
    }

    @ParameterizedTest
    @CsvSource({"3420,1e-2", "64,1e-6", "1176,0.02"})
    void vectorQ8QuantizationIsBitIdentical(int in, float std) {
        int out = 9;
        float[] v = randn(out * in, 8, std);
        v[5] = 0; v[in + 3] = -v[in + 3] * 40; // zeros and outliers
        Tensor src = Tensor.of(v, out, in);
        Tensor a = Quant.quantize(src, DType.Q8_0), b = Quant.quantize(src, DType.Q8_0, VectorOps::quantizeQ8);
        long n = Quant.storageBytes(DType.Q8_0, src.shape());
        assertArrayEquals(a.data().asSlice(0, n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE),
                b.data().asSlice(0, n).toArray(java.lang.foreign.ValueLayout.JAVA_BYTE));
    }

    @Test
    void q4NibbleLayoutMatchesGgml() {
        float[] v = new float[32];
        for (int i = 0; i < 32; i++) v[i] = i - 8; // max |x| = 23 (positive) -> d = -23/8
        Tensor q = Quant.quantize(Tensor.of(v, 1, 32), DType.Q4_0);
        float d = Float.float16ToFloat(Float.floatToFloat16(23f / -8f));
        assertEquals(-8 * d, q.getFloat(31), 1e-6);
        assertEquals(Math.round(0 / d) * d, q.getFloat(8), 1e-6);
    }

    /**
     * The tiled attention (Vector API, and the C kernel where it loads: 8 queries, 32-key tiles, its own exp) against
     * the scalar reference: causal with a cache offset, ViT-like segments, GQA, tiles cut by the range's end, head
     * dims 16 / 80 / 128 (the C kernel's 16-wide column chunk left over at 80) and 24 (the C kernel cannot take it).
     */
    @ParameterizedTest
    @CsvSource({"1,40,16,4,2,true", "7,7,16,4,2,true", "33,33,128,16,2,true", "70,70,80,4,4,false", "3,300,128,8,2,true",
            "100,100,80,16,16,false", "45,77,24,4,1,true", "64,64,128,16,2,true", "9,1000,128,16,2,true"})
    void attentionMatchesScalarReference(int n, int kvLen, int d, int hq, int hkv, boolean causal) {
        float[] q = randn(n * hq * d, 5, 1f), k = randn(kvLen * hkv * d, 6, 1f), v = randn(kvLen * hkv * d, 7, 1f);
        AttentionMask mask = causal ? AttentionMask.causal(kvLen - n) : AttentionMask.segments(new int[]{0, 17, 50, n});
        float[] ref = ScalarAttention.compute(q, n, k, v, kvLen, hq, hkv, d, mask).toFloatArray();
        assertNear("attention (Vector API)", ref, Attention.compute(q, n, k, v, kvLen, hq, hkv, d, mask, false).toFloatArray(), 1e-5);
        if (Attention.NATIVE)
            assertNear("attention (C kernel)", ref, Attention.compute(q, n, k, v, kvLen, hq, hkv, d, mask, true).toFloatArray(), 1e-5);
    }

    /**
     * Several matrices against the same activations in one packed GEMM ({@code Gemm.gemmMany}: q/k/v, gate/up in
     * prefill) give every output the same bits as one GEMM per matrix: output widths that are not multiples of the
     * 32-column panels (so a panel group spans two matrices), partial 6-row blocks, several k-slices, both loop
     * orders, both kernels, and the dtypes the GEMM packs. And {@code CpuBackend.linears} takes that path.
     */
    @ParameterizedTest
    @CsvSource({"16,300", "37,520", "70,2048"})
    void gemmOverSeveralMatricesMatchesOneGemmEach(int n, int in) {
        int[] outs = {70, 32, 45};
        float[] x = randn(n * in, 51, 1f);
        for (String kind : new String[]{"F32", "BF16N", "Q8_0", "Q4_0"}) {
            Tensor[] ws = new Tensor[outs.length];
            for (int m = 0; m < outs.length; m++) ws[m] = weight(kind, randn(outs[m] * in, 60 + m, 0.02f), outs[m], in);
            for (boolean nat : Gemm.NATIVE ? new boolean[]{false, true} : new boolean[]{false})
                for (long chunkAbove : new long[]{Long.MAX_VALUE, 0}) {
                    float[][] many = new float[outs.length][];
                    for (int m = 0; m < outs.length; m++) many[m] = new float[n * outs[m]];
                    Gemm.gemmMany(x, n, in, ws, outs, many, nat, chunkAbove);
                    for (int m = 0; m < outs.length; m++) {
                        float[] one = new float[n * outs[m]];
                        Gemm.gemm(x, n, in, ws[m], outs[m], one, nat, chunkAbove);
                        for (int e = 0; e < one.length; e++)
                            if (Float.floatToRawIntBits(one[e]) != Float.floatToRawIntBits(many[m][e]))
                                fail(String.format("%s n=%d in=%d native=%b chunked=%b: matrix %d y[%d][%d] together %s, alone %s",
                                        kind, n, in, nat, chunkAbove == 0, m, e / outs[m], e % outs[m], many[m][e], one[e]));
                    }
                }
            // through the backend: 64+ rows for bf16, 16+ for the others reach the GEMM; with biases
            if (n >= (kind.startsWith("BF16") ? 64 : 16)) {
                CpuBackend be = new CpuBackend();
                Tensor[] bs = {Tensor.of(randn(outs[0], 70, 1f), outs[0]), null, Tensor.of(randn(outs[2], 71, 1f), outs[2])};
                Tensor[] got = be.linears(Tensor.of(x, n, in), ws, bs);
                for (int m = 0; m < outs.length; m++)
                    assertArrayEquals(be.linear(Tensor.of(x, n, in), ws[m], bs[m]).toFloatArray(), got[m].toFloatArray(),
                            kind + " linears vs linear, matrix " + m);
            }
        }
    }
}
