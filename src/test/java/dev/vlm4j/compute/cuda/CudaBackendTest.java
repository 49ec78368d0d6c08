package dev.vlm4j.compute.cuda;

import dev.vlm4j.Compare;
import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.lang.foreign.MemorySegment;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every {@link CudaBackend} operation against {@link CpuBackend} on random inputs. Skipped, with the reason, where
 * no CUDA device (driver, cuBLASLt, NVRTC) is usable.
 */
class CudaBackendTest {
    static CudaBackend gpu, gpuBf16;
    static final CpuBackend cpu = new CpuBackend();
    static final Random rnd = new Random(42);

    @BeforeAll
    static void open() {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "CUDA unavailable: " + why);
        gpu = CudaBackend.create(0, Precision.F32);
        gpuBf16 = CudaBackend.create(0, Precision.BF16);
        System.out.println("CudaBackendTest on " + gpu);
    }

    @AfterAll
    static void close() {
        if (gpu != null) gpu.close();
        if (gpuBf16 != null) gpuBf16.close();
    }

    static float[] rand(int n, float scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) a[i] = (float) (rnd.nextGaussian() * scale);
        return a;
    }

    static Tensor host(float[] v, long... shape) { return Tensor.of(v, shape); }

    static Tensor hostBf16(float[] v, long... shape) {
        short[] s = new short[v.length];
        for (int i = 0; i < v.length; i++) s[i] = CudaBackend.toBf16(v[i]);
        return new Tensor(DType.BF16, shape, MemorySegment.ofArray(s), Device.CPU);
    }

    static float[] roundBf16(float[] v) {
        float[] r = new float[v.length];
        for (int i = 0; i < v.length; i++) r[i] = Float.intBitsToFloat((CudaBackend.toBf16(v[i]) & 0xffff) << 16);
        return r;
    }

    static void close(String what, Tensor expectedCpu, Backend b, Tensor actual, double tol) {
        assertArrayEquals(expectedCpu.shape(), actual.shape(), what + " shape");
        assertEquals(b.device(), actual.device(), what + " device");
        Compare.assertClose(what, cpu.toHost(expectedCpu), b.toHost(actual), tol);
    }

    @Test
    void hostRoundTripAndZeros() {
        float[] v = rand(1000, 1);
        Tensor t = gpu.fromHost(v, 10, 100);
        assertEquals("cuda", t.device().kind());
        assertArrayEquals(v, gpu.toHost(t));
        float[] z = gpu.toHost(gpu.zeros(7, 33));
        for (float f : z) assertEquals(0f, f);
    }

    @Test
    void linearF32() {
        for (int[] s : new int[][]{{5, 70, 33}, {1, 64, 128}, {17, 1176, 64}, {3, 128, 151}}) {
            int n = s[0], in = s[1], out = s[2];
            float[] x = rand(n * in, 1), w = rand(out * in, 0.1f), b = rand(out, 0.5f);
            Tensor e = cpu.linear(host(x, n, in), host(w, out, in), host(b, out));
            Tensor wd = gpu.upload(host(w, out, in));
            assertEquals(DType.F32, wd.dtype());
            close("linear f32 " + n + "x" + in + "x" + out, e, gpu, gpu.linear(gpu.fromHost(x, n, in), wd, gpu.upload(host(b, out))), 1e-4);
            close("linear f32 no bias, bf16 weights widened", cpu.linear(host(x, n, in), hostBf16(w, out, in), null),
                    gpu, gpu.linear(gpu.fromHost(x, n, in), gpu.upload(hostBf16(w, out, in)), null), 1e-4);
        }
    }

    @Test
    void linearBf16() {
        for (int[] s : new int[][]{{5, 72, 40}, {1, 64, 128}, {33, 256, 96}, {1, 4096, 1000}, {1, 72, 40}, {1, 11008, 4100}, {1, 16384, 24}}) {
            int n = s[0], in = s[1], out = s[2];
            float[] x = rand(n * in, 1), w = rand(out * in, 0.1f), b = rand(out, 0.5f);
            // reference: activations rounded to bf16 as the GPU does, bf16 weights, f32 accumulation
            Tensor e = cpu.linear(host(roundBf16(x), n, in), hostBf16(w, out, in), host(b, out));
            Tensor wd = gpuBf16.upload(host(w, out, in));
            assertEquals(DType.BF16, wd.dtype());
            close("linear bf16 " + n + "x" + in + "x" + out, e, gpuBf16,
                    gpuBf16.linear(gpuBf16.fromHost(x, n, in), wd, gpuBf16.upload(host(b, out))), 2e-3);
        }
    }

    /** The fused batch-1 ops (q/k/v in one launch, SwiGLU, residual projection) against the CPU's compositions. */
    @Test
    void fusedDecodeProducts() {
        for (int[] s : new int[][]{{4096, 4096, 1024}, {72, 40, 8}, {11008, 24, 17}, {256, 3, 5}}) {
            int in = s[0], big = s[1], small = s[2];
            float[] x = rand(in, 1);
            float[][] w = {rand(big * in, 0.05f), rand(small * in, 0.05f), rand(small * in, 0.05f)};
            float[][] b = {rand(big, 0.5f), rand(small, 0.5f), null};
            Tensor xr = host(roundBf16(x), 1, in);
            Tensor[] hw = new Tensor[3], dw = new Tensor[3], hb = new Tensor[3];
            for (int i = 0; i < 3; i++) {
                int rows = i == 0 ? big : small;
                hw[i] = hostBf16(w[i], rows, in);
                dw[i] = gpuBf16.upload(host(w[i], rows, in));
                hb[i] = b[i] == null ? null : host(b[i], rows);
            }
            Tensor xd = gpuBf16.fromHost(x, 1, in);
            Tensor[] e = cpu.linears(xr, hw, hb), got = gpuBf16.linears(xd, dw, hb);
            for (int i = 0; i < 3; i++) close("linears[" + i + "] in=" + in, e[i], gpuBf16, got[i], 2e-3);
            Tensor up = gpuBf16.upload(host(rand(big * in, 0.05f), big, in));
            Tensor upHost = hostBf16(gpuBf16.toHost(up), big, in);
            close("swiGlu in=" + in, cpu.swiGlu(xr, hw[0], upHost), gpuBf16, gpuBf16.swiGlu(xd, dw[0], up), 2e-3);
            Tensor down = gpuBf16.upload(host(rand(big * in, 0.05f), in, big));
            float[] h = rand(big, 1);
            close("addLinear in=" + big, cpu.addLinear(host(x, 1, in), host(roundBf16(h), 1, big), hostBf16(gpuBf16.toHost(down), in, big)),
                    gpuBf16, gpuBf16.addLinear(xd, gpuBf16.fromHost(h, 1, big), down), 2e-3);
            // the same products through the warp-per-row kernel and separate launches agree too
            gpuBf16.useFusedGemv(false);
            Tensor[] warp = gpuBf16.linears(xd, dw, hb);
            gpuBf16.useFusedGemv(true);
            for (int i = 0; i < 3; i++) close("warp kernel linears[" + i + "]", e[i], gpuBf16, warp[i], 2e-3);
        }
    }

    @Test
    void bf16InputReusedUntilWrittenInPlace() {
        int n = 4, in = 64, out = 32;
        float[] x = rand(n * in, 1), w1 = rand(out * in, 0.1f), w2 = rand(out * in, 0.1f);
        float[] c = new float[n * 16], sn = new float[n * 16];
        for (int i = 0; i < c.length; i++) { c[i] = (float) Math.cos(i); sn[i] = (float) Math.sin(i); }
        Tensor xd = gpuBf16.fromHost(x, n, in);
        Tensor a1 = gpuBf16.linear(xd, gpuBf16.upload(host(w1, out, in)), null);
        Tensor a2 = gpuBf16.linear(xd, gpuBf16.upload(host(w2, out, in)), null);
        close("first product of x", cpu.linear(host(roundBf16(x), n, in), hostBf16(w1, out, in), null), gpuBf16, a1, 2e-3);
        close("second product of x", cpu.linear(host(roundBf16(x), n, in), hostBf16(w2, out, in), null), gpuBf16, a2, 2e-3);
        Tensor xc = host(x.clone(), n, in);
        cpu.rotary(xc, 4, host(c, n, 16), host(sn, n, 16));
        gpuBf16.rotary(xd, 4, gpuBf16.fromHost(c, n, 16), gpuBf16.fromHost(sn, n, 16));
        close("product after x changed in place", cpu.linear(host(roundBf16(cpu.toHost(xc)), n, in), hostBf16(w1, out, in), null),
                gpuBf16, gpuBf16.linear(xd, gpuBf16.upload(host(w1, out, in)), null), 2e-3);
    }

    @Test
    void normsAndElementwise() {
        int n = 6, d = 1280;
        float[] x = rand(n * d, 2), y = rand(n * d, 2), w = rand(d, 1);
        Tensor xd = gpu.fromHost(x, n, d), yd = gpu.fromHost(y, n, d);
        close("rmsNorm", cpu.rmsNorm(host(x, n, d), host(w, d), 1e-6f), gpu, gpu.rmsNorm(xd, gpu.upload(host(w, d)), 1e-6f), 1e-5);
        float[] w64 = java.util.Arrays.copyOf(w, 64);
        close("rmsNorm tiny", cpu.rmsNorm(host(x, n * 20, 64), host(w64, 64), 1e-5f), gpu,
                gpu.rmsNorm(gpu.fromHost(x, n * 20, 64), gpu.upload(host(w64, 64)), 1e-5f), 1e-5);
        close("add", cpu.add(host(x, n, d), host(y, n, d)), gpu, gpu.add(xd, yd), 1e-6);
        close("siluMul", cpu.siluMul(host(x, n, d), host(y, n, d)), gpu, gpu.siluMul(xd, yd), 1e-5);
        close("gelu", cpu.gelu(host(x, n, d)), gpu, gpu.gelu(xd), 1e-5);
        close("add with a host operand", cpu.add(host(x, n, d), host(y, n, d)), gpu, gpu.add(xd, host(y, n, d)), 1e-6);
    }

    @Test
    void embeddingAndRows() {
        int vocab = 300, d = 96;
        float[] table = rand(vocab * d, 1);
        int[] ids = {0, 5, 299, 5, 17};
        close("embedding f32", cpu.embedding(host(table, vocab, d), ids), gpu, gpu.embedding(gpu.upload(host(table, vocab, d)), ids), 0);
        close("embedding bf16", cpu.embedding(hostBf16(table, vocab, d), ids), gpuBf16,
                gpuBf16.embedding(gpuBf16.upload(hostBf16(table, vocab, d)), ids), 0);
        assertThrows(IllegalArgumentException.class, () -> gpu.embedding(gpu.upload(host(table, vocab, d)), new int[]{300}));

        int n = 12;
        float[] x = rand(n * d, 1);
        int[] perm = {3, 1, 0, 2, 7, 5, 4, 6, 11, 8, 10, 9};
        close("gatherRows", cpu.gatherRows(host(x, n, d), perm), gpu, gpu.gatherRows(gpu.fromHost(x, n, d), perm), 0);

        float[] src = rand(3 * d, 1);
        Tensor dc = host(x.clone(), n, d), dg = gpu.fromHost(x, n, d);
        int[] rows = {4, 0, 9};
        cpu.scatterRows(dc, rows, host(src, 3, d));
        gpu.scatterRows(dg, rows, gpu.fromHost(src, 3, d));
        close("scatterRows", dc, gpu, dg, 0);

        Tensor cc = host(x.clone(), n, d), cg = gpu.fromHost(x, n, d);
        cpu.copyRows(cc, 5, host(src, 3, d));
        gpu.copyRows(cg, 5, gpu.fromHost(src, 3, d));
        close("copyRows", cc, gpu, cg, 0);

        close("columns", cpu.columns(host(x, n, d), 32, 64), gpu, gpu.columns(gpu.fromHost(x, n, d), 32, 64), 0);
    }

    @Test
    void rotary() {
        for (int[] s : new int[][]{{7, 4, 16}, {5, 16, 80}, {3, 32, 128}}) {
            int n = s[0], heads = s[1], d = s[2];
            float[] x = rand(n * heads * d, 1), c = rand(n * d, 1), sn = rand(n * d, 1);
            Tensor xc = host(x.clone(), n, (long) heads * d), xg = gpu.fromHost(x, n, (long) heads * d);
            cpu.rotary(xc, heads, host(c, n, d), host(sn, n, d));
            gpu.rotary(xg, heads, gpu.fromHost(c, n, d), gpu.fromHost(sn, n, d));
            close("rotary " + heads + "x" + d, xc, gpu, xg, 1e-5);
        }
    }

    /** Full attention over a long sequence in bf16 mode runs as batched tensor-core products (bf16 Q, K, V and P). */
    @Test
    void longFullAttentionAsProducts() {
        int n = 2300, heads = 4, d = 80;
        AttentionMask mask = AttentionMask.segments(new int[]{0, 1100, n});   // two long images
        float[] q = rand(n * heads * d, 1), k = rand(n * heads * d, 1), v = rand(n * heads * d, 1);
        Tensor e = cpu.attention(host(roundBf16(q), n, (long) heads * d), host(roundBf16(k), n, (long) heads * d),
                host(roundBf16(v), n, (long) heads * d), n, heads, heads, mask);
        Tensor qd = gpuBf16.fromHost(q, n, (long) heads * d), kd = gpuBf16.fromHost(k, n, (long) heads * d),
                vd = gpuBf16.fromHost(v, n, (long) heads * d);
        // bf16 probabilities: about 2^-9 relative per weight, averaged over the keys
        close("attention as products", e, gpuBf16, gpuBf16.attention(qd, kd, vd, n, heads, heads, mask), 5e-3);
        gpuBf16.useGemmAttention(false);
        Tensor flash = gpuBf16.attention(qd, kd, vd, n, heads, heads, mask);
        gpuBf16.useGemmAttention(true);
        close("attention flash kernel, same inputs rounded", cpu.attention(host(q, n, (long) heads * d), host(k, n, (long) heads * d),
                host(v, n, (long) heads * d), n, heads, heads, mask), gpuBf16, flash, 1e-4);
    }

    private void attentionCase(String what, int n, int kvRows, int kvLen, int hq, int hkv, int d, AttentionMask mask) {
        float[] q = rand(n * hq * d, 1), k = rand(kvRows * hkv * d, 1), v = rand(kvRows * hkv * d, 1);
        Tensor e = cpu.attention(host(q, n, (long) hq * d), host(k, kvRows, (long) hkv * d), host(v, kvRows, (long) hkv * d),
                kvLen, hq, hkv, mask);
        Tensor a = gpu.attention(gpu.fromHost(q, n, (long) hq * d), gpu.fromHost(k, kvRows, (long) hkv * d),
                gpu.fromHost(v, kvRows, (long) hkv * d), kvLen, hq, hkv, mask);
        close("attention " + what, e, gpu, a, 1e-5);
    }

    @Test
    void attention() {
        attentionCase("causal prefill GQA", 9, 16, 9, 4, 2, 16, AttentionMask.causal(0));
        attentionCase("causal with cache offset", 3, 32, 13, 4, 2, 16, AttentionMask.causal(10));
        attentionCase("decode one token, 128-wide heads, many tiles", 1, 512, 300, 32, 8, 128, AttentionMask.causal(299));
        attentionCase("prefill 200 tokens d=128", 200, 200, 200, 8, 2, 128, AttentionMask.causal(0));
        attentionCase("segments (ViT windows)", 20, 20, 20, 2, 2, 80, AttentionMask.segments(new int[]{0, 7, 12, 20}));
        attentionCase("one long segment", 300, 300, 300, 2, 2, 80, AttentionMask.segments(new int[]{0, 300}));
        attentionCase("causal segments", 20, 20, 20, 4, 1, 16, AttentionMask.causalSegments(new int[]{0, 4, 20}));
        attentionCase("bidirectional, no segments", 10, 10, 10, 4, 4, 32, new AttentionMask(null, false, 0));
        attentionCase("head size 72 (not a multiple of 32)", 5, 40, 37, 6, 3, 72, AttentionMask.causal(32));
        attentionCase("head size 256", 2, 64, 50, 4, 4, 256, AttentionMask.causal(48));
        attentionCase("fewer keys than warps", 3, 3, 3, 2, 1, 64, AttentionMask.causal(0));
        attentionCase("decode over a long cache (split keys)", 1, 2100, 2050, 32, 8, 128, AttentionMask.causal(2049));
        attentionCase("4 queries over a long cache (split keys)", 4, 1100, 1030, 8, 2, 128, AttentionMask.causal(1026));
        attentionCase("split keys, most splits past the causal end", 4, 1100, 1030, 8, 2, 128, AttentionMask.causal(300));
        attentionCase("bidirectional over a long cache (split keys)", 2, 700, 600, 4, 4, 80, new AttentionMask(null, false, 0));
        // the tiled kernel (>= 32 queries, d % 16 == 0): tiles straddling segments, cache offsets, GQA, ragged ends
        attentionCase("tiled: many uneven windows", 230, 230, 230, 4, 4, 80,
                AttentionMask.segments(new int[]{0, 64, 80, 144, 150, 214, 230}));
        attentionCase("tiled: causal with a cache offset", 70, 200, 170, 8, 2, 128, AttentionMask.causal(100));
        attentionCase("tiled: causal segments", 100, 100, 100, 4, 2, 64, AttentionMask.causalSegments(new int[]{0, 33, 100}));
        attentionCase("tiled: d=16, bidirectional", 65, 65, 65, 2, 1, 16, new AttentionMask(null, false, 0));
    }

    @Test
    void batchedDecodeOps() {
        int b = 5, hq = 8, hkv = 2, d = 128, w = hkv * d;
        int[] lens = {1, 7, 300, 64, 1100};
        Tensor[] kc = new Tensor[b], vc = new Tensor[b], kg = new Tensor[b], vg = new Tensor[b];
        for (int i = 0; i < b; i++) {
            int rows = lens[i] + 3;
            float[] k = rand(rows * w, 1), v = rand(rows * w, 1);
            kc[i] = host(k, rows, w); vc[i] = host(v, rows, w);
            kg[i] = gpu.fromHost(k, rows, w); vg[i] = gpu.fromHost(v, rows, w);
        }
        float[] nk = rand(b * w, 1), nv = rand(b * w, 1), q = rand(b * hq * d, 1);
        int[] rows = new int[b];
        for (int i = 0; i < b; i++) rows[i] = lens[i] - 1;
        cpu.appendRows(kc, rows, host(nk, b, w));
        cpu.appendRows(vc, rows, host(nv, b, w));
        gpu.appendRows(kg, rows, gpu.fromHost(nk, b, w));
        gpu.appendRows(vg, rows, gpu.fromHost(nv, b, w));
        for (int i = 0; i < b; i++) close("appendRows " + i, kc[i], gpu, kg[i], 0);
        Tensor e = cpu.attentionBatch(host(q, b, (long) hq * d), kc, vc, lens, hq, hkv);
        Tensor a = gpu.attentionBatch(gpu.fromHost(q, b, (long) hq * d), kg, vg, lens, hq, hkv);
        close("attentionBatch", e, gpu, a, 1e-5);
        float[] logits = rand(3 * 151680, 1);
        logits[151679] = 100;
        logits[151680 + 5] = 100;
        logits[2 * 151680 + 77] = 100;
        logits[2 * 151680 + 78] = 100;
        assertArrayEquals(new int[]{151679, 5, 77}, gpu.argmaxRows(gpu.fromHost(logits, 3, 151680)));
        assertArrayEquals(cpu.argmaxRows(host(logits, 3, 151680)), gpu.argmaxRows(gpu.fromHost(logits, 3, 151680)));
    }

    @Test
    void poolReusesMemoryAcrossManySteps() {
        long before = gpu.deviceBytes()[0];
        Tensor x = gpu.fromHost(rand(1 << 18, 1), 256, 1024);   // 1 MiB
        for (int i = 0; i < 10000; i++) x = gpu.add(x, x);       // 10 GiB allocated in total, nothing kept
        gpu.synchronize();
        long grown = gpu.deviceBytes()[0] - before;
        System.out.println("pool after 10000 x 1 MiB steps: +" + (grown >> 20) + " MiB held, peak " + (gpu.deviceBytes()[1] >> 20) + " MiB");
        assertTrue(grown < (6L << 30), "the pool kept " + grown + " bytes");   // it collects every <= 4 GiB
    }

    @Test
    void releaseCachedMemoryReturnsBlocksToTheDriver() {
        Tensor keep = gpu.fromHost(rand(1000, 1), 10, 100);
        for (int i = 0; i < 64; i++) gpu.zeros(1024, 1024 + i);   // ~256 MiB of garbage in distinct size classes
        gpu.synchronize();
        long held = gpu.deviceBytes()[0];
        gpu.releaseCachedMemory();
        long after = gpu.deviceBytes()[0];
        System.out.println("releaseCachedMemory: " + (held >> 20) + " MiB -> " + (after >> 20) + " MiB");
        assertTrue(after < held - (128L << 20), "held " + held + " bytes, still " + after + " after releasing the cache");
        assertEquals(1000, gpu.toHost(keep).length);   // a live tensor is untouched
        assertArrayEquals(gpu.toHost(keep), gpu.toHost(gpu.add(keep, gpu.zeros(10, 100))));
    }
}
