package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.GradOps;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Tensor;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Every {@link CudaGradOps} operation against the host reference ({@code HostGradOps} on {@link CpuBackend}) on
 * random inputs, in float32 mode (tight bounds) and, for attention, bf16 mode (bf16 bounds); the seeded dropout
 * mask bit for bit against the host default; {@link CudaBackend#scoped} giving memory back. Skipped, with the
 * reason, without a usable CUDA device.
 */
class CudaGradOpsTest {
    static CudaBackend gpu, gpuBf16;
    static final CpuBackend cpu = new CpuBackend();
    static final Random rnd = new Random(7);

    @BeforeAll
    static void open() {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "CUDA unavailable: " + why);
        gpu = CudaBackend.create(0, Precision.F32);
        gpuBf16 = CudaBackend.create(0, Precision.BF16);
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

    /** The same values as a host tensor and a device tensor. */
    record Pair(Tensor h, Tensor d) {
        static Pair of(Backend dev, float[] v, long... shape) { return new Pair(Tensor.of(v.clone(), shape), dev.fromHost(v.clone(), shape)); }
    }

    static Pair rnd(Backend dev, float scale, long... shape) { return Pair.of(dev, rand((int) Tensor.numel(shape), scale), shape); }

    /** Gradient destinations starting from the same random values (so that accumulation is checked too). */
    static Pair acc(Backend dev, long... shape) { return rnd(dev, 0.1f, shape); }

    static void assertClose(Pair p, Backend dev, double bound, String what) {
        float[] a = p.h.heapFloats(), b = dev.toHost(p.d);
        double d2 = 0, n2 = 0;
        int worst = 0;
        for (int i = 0; i < a.length; i++) {
            double e = (double) a[i] - b[i];
            d2 += e * e;
            n2 += (double) a[i] * a[i];
            if (Math.abs(e) > Math.abs(a[worst] - b[worst])) worst = i;
        }
        double rel = Math.sqrt(d2 / Math.max(n2, 1e-30));
        System.out.printf("%s: relative L2 %.2e%n", what, rel);
        assertTrue(rel <= bound, String.format("%s: relative L2 %.3e > %.1e (element %d: host %g, cuda %g)", what, rel, bound,
                worst, a[worst], b[worst]));
    }

    static GradOps host() { return cpu.gradOps(); }

    @Test
    void elementwiseOps() {
        GradOps g = gpu.gradOps();
        int n = 37, d = 96;
        Pair dy = rnd(gpu, 1f, n, d), a = rnd(gpu, 2f, n, d), u = rnd(gpu, 1f, n, d);
        Pair da = acc(gpu, n, d), du = acc(gpu, n, d);
        host().siluMul(dy.h, a.h, u.h, da.h, du.h);
        g.siluMul(dy.d, a.d, u.d, da.d, du.d);
        assertClose(da, gpu, 1e-6, "siluMul dGate");
        assertClose(du, gpu, 1e-6, "siluMul dUp");
        Pair dx = acc(gpu, n, d);
        host().gelu(dy.h, a.h, dx.h);
        g.gelu(dy.d, a.d, dx.d);
        assertClose(dx, gpu, 1e-6, "gelu");
        host().axpy(dx.h, dy.h, 0.37f);
        g.axpy(dx.d, dy.d, 0.37f);
        assertClose(dx, gpu, 1e-6, "axpy");
        host().addProduct(dx.h, a.h, u.h);
        g.addProduct(dx.d, a.d, u.d);
        assertClose(dx, gpu, 1e-6, "addProduct");
        host().addDropout(dx.h, dy.h, 0.3f, 0xfeedbeefL);
        g.addDropout(dx.d, dy.d, 0.3f, 0xfeedbeefL);
        assertClose(dx, gpu, 1e-6, "addDropout");
        Tensor sc = gpu.scale(dy.d, 1.5f), pr = gpu.mul(a.d, u.d);
        float[] dyh = dy.h.heapFloats(), ah = a.h.heapFloats(), uh = u.h.heapFloats();
        float[] sch = gpu.toHost(sc), prh = gpu.toHost(pr);
        for (int i = 0; i < dyh.length; i++) {
            assertEquals(dyh[i] * 1.5f, sch[i], "scale element " + i);
            assertEquals(ah[i] * uh[i], prh[i], "mul element " + i);
        }
        host().scale(dx.h, 0.25);
        g.scale(dx.d, 0.25);
        assertClose(dx, gpu, 1e-6, "scale");
        assertEquals(host().sumSquares(dx.h), g.sumSquares(dx.d), 1e-5 * host().sumSquares(dx.h), "sumSquares");
        Pair cols = acc(gpu, n, 130);
        host().addColumns(cols.h, 17, dy.h);
        g.addColumns(cols.d, 17, dy.d);
        assertClose(cols, gpu, 1e-6, "addColumns");
        Pair rows = acc(gpu, 11, d);
        int[] dst = {3, 0, 3, 10, 5}, src = {36, 2, 2, 0, 9};
        host().addRows(rows.h, dst, dy.h, src, dst.length);
        g.addRows(rows.d, dst, dy.d, src, dst.length);
        assertClose(rows, gpu, 1e-6, "addRows (repeated destination rows)");
        host().addRows(rows.h, null, dy.h, null, 11);
        g.addRows(rows.d, null, dy.d, null, 11);
        assertClose(rows, gpu, 1e-6, "addRows (identity)");
        g.zero(rows.d);
        assertEquals(0.0, g.sumSquares(rows.d), "zero");
    }

    @Test
    void normRotaryAndLinear() {
        GradOps g = gpu.gradOps();
        int n = 29, d = 256, heads = 4, hd = 64, out = 72;
        Pair dy = rnd(gpu, 1f, n, d), x = rnd(gpu, 1f, n, d), w = rnd(gpu, 1f, d);
        Pair dx = acc(gpu, n, d), dw = acc(gpu, d);
        host().rmsNorm(dy.h, x.h, w.h, 1e-6f, dx.h, dw.h);
        g.rmsNorm(dy.d, x.d, gpu.upload(w.h), 1e-6f, dx.d, dw.d);
        assertClose(dx, gpu, 1e-5, "rmsNorm dx");
        assertClose(dw, gpu, 1e-5, "rmsNorm dw");
        Pair cos = rnd(gpu, 1f, n, hd), sin = rnd(gpu, 1f, n, hd), rx = acc(gpu, n, heads * hd);
        Pair rg = rnd(gpu, 1f, n, heads * hd);
        host().rotary(rg.h, heads, cos.h, sin.h, rx.h);
        g.rotary(rg.d, heads, cos.d, sin.d, rx.d);
        assertClose(rx, gpu, 1e-6, "rotary");
        Pair gy = rnd(gpu, 1f, n, out), wt = rnd(gpu, 0.1f, out, d), lx = acc(gpu, n, d), lw = acc(gpu, out, d), lb = acc(gpu, out);
        host().linearDx(gy.h, wt.h, lx.h);
        g.linearDx(gy.d, gpu.upload(wt.h), lx.d);
        assertClose(lx, gpu, 1e-5, "linearDx (f32 weights)");
        host().linearDw(gy.h, x.h, lw.h, lb.h);
        g.linearDw(gy.d, x.d, lw.d, lb.d);
        assertClose(lw, gpu, 1e-5, "linearDw");
        assertClose(lb, gpu, 1e-5, "linearDw bias");
        // bf16 frozen weights: dy rounded to bf16 for the product
        Pair bx = Pair.of(gpuBf16, new float[n * d], n, d);
        gpuBf16.gradOps().linearDx(gpuBf16.fromHost(cpuValues(gy), n, out), gpuBf16.upload(wt.h), bx.d);
        host().linearDx(gy.h, wt.h, bx.h);
        assertClose(bx, gpuBf16, 1e-2, "linearDx (bf16 weights)");
    }

    private static float[] cpuValues(Pair p) { return p.h.heapFloats().clone(); }

    @Test
    void crossEntropyAndAdamW() {
        GradOps g = gpu.gradOps();
        int n = 6, vocab = 5000;
        Pair l = rnd(gpu, 3f, n, vocab);
        int[] targets = {4, -1, 0, 4999, 17, -1};
        GradOps.Loss lh = host().crossEntropy(l.h, targets), ld = g.crossEntropy(l.d, targets);
        assertEquals(lh.count(), ld.count(), "rows with a target");
        assertEquals(lh.sum(), ld.sum(), 1e-5 * Math.abs(lh.sum()), "summed loss");
        Pair dl = acc(gpu, n, vocab);
        lh.backward(dl.h, 0.3);
        ld.backward(dl.d, 0.3);
        assertClose(dl, gpu, 1e-5, "cross-entropy gradient");
        Pair p = rnd(gpu, 1f, 1000), gr = rnd(gpu, 1f, 1000), m = acc(gpu, 1000), v = Pair.of(gpu, new float[1000], 1000);
        for (int t = 1; t <= 3; t++) {
            double bc1 = 1 - Math.pow(0.9, t), bc2 = 1 - Math.pow(0.999, t);
            host().adamW(p.h, gr.h, m.h, v.h, 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
            g.adamW(p.d, gr.d, m.d, v.d, 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
        }
        assertClose(p, gpu, 1e-6, "AdamW parameters");
        assertClose(m, gpu, 1e-6, "AdamW first moment");
        assertClose(v, gpu, 1e-5, "AdamW second moment");
    }

    /** The multi-tensor AdamW, scale and sum of squares (one launch each) against the host's tensor-by-tensor forms. */
    @Test
    void multiTensorOptimizerOps() {
        GradOps g = gpu.gradOps();
        int[] sizes = {1000, 37, 70_000, 1};
        java.util.List<Pair> p = new java.util.ArrayList<>(), gr = new java.util.ArrayList<>(), m = new java.util.ArrayList<>(), v = new java.util.ArrayList<>();
        for (int n : sizes) {
            p.add(rnd(gpu, 1f, n));
            gr.add(rnd(gpu, 1f, n));
            m.add(acc(gpu, n));
            v.add(Pair.of(gpu, new float[n], n));
        }
        java.util.function.Function<java.util.List<Pair>, java.util.List<Tensor>> dev = l -> l.stream().map(Pair::d).toList();
        double want = 0;
        for (Pair x : gr) want += host().sumSquares(x.h);
        assertEquals(want, g.sumSquares(dev.apply(gr)), 1e-9 * want, "sum of squares over the tensors");
        for (Pair x : gr) host().scale(x.h, 0.37);
        g.scale(dev.apply(gr), 0.37);
        for (int i = 0; i < sizes.length; i++) assertClose(gr.get(i), gpu, 1e-7, "scaled gradient " + i);
        for (int t = 1; t <= 3; t++) {
            double bc1 = 1 - Math.pow(0.9, t), bc2 = 1 - Math.pow(0.999, t);
            for (int i = 0; i < sizes.length; i++)
                host().adamW(p.get(i).h, gr.get(i).h, m.get(i).h, v.get(i).h, 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
            g.adamW(dev.apply(p), dev.apply(gr), dev.apply(m), dev.apply(v), 1e-3, 0.9, 0.999, 1e-8, 0.1, bc1, bc2);
        }
        for (int i = 0; i < sizes.length; i++) {
            assertClose(p.get(i), gpu, 1e-6, "AdamW parameters of tensor " + i);
            assertClose(m.get(i), gpu, 1e-6, "AdamW first moment of tensor " + i);
            assertClose(v.get(i), gpu, 1e-5, "AdamW second moment of tensor " + i);
        }
        g.zero(dev.apply(gr));   // one launch zeroes them all
        for (int i = 0; i < sizes.length; i++) assertArrayEquals(new float[sizes[i]], gpu.toHost(gr.get(i).d), "zeroed tensor " + i);
    }

    /** Attention backward for one configuration, float32 mode against the host; bf16 mode with a bf16 bound. */
    private static void attention(int n, int kvLen, int hq, int hkv, int d, AttentionMask mask, String what) {
        for (boolean flash : new boolean[]{true, false}) {
            gpuBf16.useTensorCoreFlash(flash);
            try {
                attention(n, kvLen, hq, hkv, d, mask, what + (flash ? " (flash)" : " (products)"), flash ? new CudaBackend[]{gpu, gpuBf16} : new CudaBackend[]{gpuBf16});
            } finally {
                gpuBf16.useTensorCoreFlash(true);
            }
        }
    }

    private static void attention(int n, int kvLen, int hq, int hkv, int d, AttentionMask mask, String what, CudaBackend[] devs) {
        for (CudaBackend dev : devs) {
            Pair q = rnd(dev, 1f, n, hq * d), k = rnd(dev, 1f, kvLen + 3, hkv * d), v = rnd(dev, 1f, kvLen + 3, hkv * d),
                    dO = rnd(dev, 1f, n, hq * d);
            Pair dq = acc(dev, n, hq * d), dk = acc(dev, kvLen + 3, hkv * d), dv = acc(dev, kvLen + 3, hkv * d);
            host().attention(q.h, k.h, v.h, kvLen, hq, hkv, mask, dO.h, dq.h, dk.h, dv.h);
            dev.gradOps().attention(q.d, k.d, v.d, kvLen, hq, hkv, mask, dO.d, dq.d, dk.d, dv.d);
            double bound = dev == gpu ? 1e-4 : 3e-2;
            String m = what + (dev == gpu ? " f32" : " bf16");
            assertClose(dq, dev, bound, m + " dq");
            assertClose(dk, dev, bound, m + " dk");
            assertClose(dv, dev, bound, m + " dv");
        }
    }

    @Test
    void attentionBackward() {
        attention(40, 40, 4, 2, 16, AttentionMask.causal(0), "causal GQA d16");
        attention(24, 64, 4, 4, 64, AttentionMask.causal(40), "causal with 40 cached keys");
        attention(50, 50, 2, 2, 64, AttentionMask.segments(new int[]{0, 20, 50}), "segments");
        attention(50, 50, 4, 2, 16, AttentionMask.causalSegments(new int[]{0, 7, 50}), "causal segments GQA");
    }

    /**
     * The tensor-core flash kernels (bf16 mode) against the float32 host, forward and backward, for every head size
     * they are built for, causal / cached keys / segments / causal segments, grouped heads, tiles cut off at the ends
     * and peaked softmaxes (queries scaled by 4); the bound is bf16 rounding of the operands.
     */
    @Test
    void tensorCoreFlashAttentionMatchesTheHost() {
        Assumptions.assumeTrue(gpuBf16.tensorCoreFlash(128), "tensor-core flash attention unavailable on this device");
        FlashAttention flash = new FlashAttention(gpuBf16);
        Object[][] cases = {
                {300, 300, 8, 2, 128, AttentionMask.causal(0), 1f},
                {300, 300, 8, 2, 128, AttentionMask.causal(0), 4f},
                {130, 170, 4, 1, 64, AttentionMask.causal(40), 1f},
                {200, 200, 4, 4, 80, AttentionMask.segments(new int[]{0, 64, 128, 200}), 2f},
                {257, 257, 6, 3, 128, AttentionMask.causalSegments(new int[]{0, 5, 100, 257}), 1f},
                {97, 97, 2, 2, 16, new AttentionMask(null, false, 0), 1f},
                {70, 70, 4, 2, 32, AttentionMask.causal(0), 1f},
                {90, 90, 2, 1, 96, AttentionMask.causalSegments(new int[]{0, 33, 90}), 1f}};
        for (Object[] c : cases) {
            int n = (int) c[0], kvLen = (int) c[1], hq = (int) c[2], hkv = (int) c[3], d = (int) c[4];
            AttentionMask mask = (AttentionMask) c[5];
            float qs = (float) c[6];
            String what = "flash n=" + n + " kv=" + kvLen + " heads " + hq + "/" + hkv + " d=" + d + (mask.causal() ? " causal" : "")
                    + " offset " + mask.queryOffset() + " segments " + java.util.Arrays.toString(mask.segments()) + " q*" + qs;
            Pair q = rnd(gpuBf16, qs, n, hq * d), k = rnd(gpuBf16, 1f, kvLen + 3, hkv * d), v = rnd(gpuBf16, 1f, kvLen + 3, hkv * d),
                    dO = rnd(gpuBf16, 1f, n, hq * d);
            Tensor want = cpu.attention(q.h, k.h, v.h, kvLen, hq, hkv, mask);
            Tensor got = gpuBf16.newF32(n, (long) hq * d);
            java.lang.foreign.MemorySegment yb = gpuBf16.scratch(2L * n * hq * d);
            flash.forward(q.d, k.d, v.d, got, yb, kvLen, hq, hkv, mask);
            assertClose(new Pair(Tensor.of(cpu.toHost(want), n, hq * d), got), gpuBf16, 1e-2, what + " forward");
            // the bf16 copy written alongside is the output rounded to bf16 (as the conversion kernel rounds it)
            assertEquals(0, java.util.Arrays.compare(gpuBf16.toHostBytes(yb, 2L * n * hq * d), gpuBf16.toHostBytes(gpuBf16.bf16Of(got), 2L * n * hq * d)),
                    what + ": bf16 copy of the output");
            // the backward with the forward's output (its kept log-sum-exp reused) and without (the forward run again)
            for (Tensor out : new Tensor[]{got, null}) {
                long[] before = flash.counts();
                Pair dq = acc(gpuBf16, n, hq * d), dk = acc(gpuBf16, kvLen + 3, hkv * d), dv = acc(gpuBf16, kvLen + 3, hkv * d);
                host().attention(q.h, k.h, v.h, kvLen, hq, hkv, mask, dO.h, dq.h, dk.h, dv.h);
                flash.backward(q.d, k.d, v.d, kvLen, hq, hkv, mask, out, dO.d, dq.d, dk.d, dv.d);
                long[] after = flash.counts();
                assertEquals(out != null ? 1 : 0, after[0] - before[0], what + ": backwards that reused the kept forward");
                String w = what + (out != null ? " (kept forward)" : " (forward again)");
                assertClose(dq, gpuBf16, 1e-2, w + " dq");
                assertClose(dk, gpuBf16, 1e-2, w + " dk");
                assertClose(dv, gpuBf16, 1e-2, w + " dv");
            }
        }
    }

    /**
     * The second flash kernels (flash2_kernels.cu) against the first on a ragged case: packed causal segments, a query
     * count no tile size divides, grouped heads. Each runs its own forward (y, log-sum-exp) and backward (dq, dk, dv from
     * zero); they differ only by float32 summation order and by the bf16 rounding of P, which is relative to a running
     * maximum that starts at tile boundaries that differ between the two, so the bound is well below the host one.
     */
    @Test
    void secondFlashKernelsMatchTheFirst() {
        Assumptions.assumeTrue(gpuBf16.tensorCoreFlash(128), "tensor-core flash attention unavailable on this device");
        Assumptions.assumeTrue(new FlashAttention(gpuBf16, true).usesV2(128), "second flash kernels unavailable on this device");
        for (int d : FlashAttention.V2_HEAD_SIZES) {
            int n = 333, hq = 8, hkv = 2;
            AttentionMask mask = AttentionMask.causalSegments(new int[]{0, 7, 150, 151, 333});
            Pair q = rnd(gpuBf16, 1f, n, hq * d), k = rnd(gpuBf16, 1f, n + 5, hkv * d), v = rnd(gpuBf16, 1f, n + 5, hkv * d),
                    dO = rnd(gpuBf16, 1f, n, hq * d);
            float[][][] got = new float[2][][];
            for (int var = 0; var < 2; var++) {
                FlashAttention flash = new FlashAttention(gpuBf16, var == 1);
                assertEquals(var == 1, flash.usesV2(d));
                Tensor y = gpuBf16.newF32(n, (long) hq * d);
                flash.forward(q.d, k.d, v.d, y, gpuBf16.scratch(2L * n * hq * d), n, hq, hkv, mask);
                Tensor dq = gpuBf16.zeros(n, (long) hq * d), dk = gpuBf16.zeros(n + 5, (long) hkv * d), dv = gpuBf16.zeros(n + 5, (long) hkv * d);
                flash.backward(q.d, k.d, v.d, n, hq, hkv, mask, y, dO.d, dq, dk, dv);
                assertEquals(1, flash.counts()[0], "the backward reused the kept forward");
                got[var] = new float[][]{gpuBf16.toHost(y), gpuBf16.toHost(flash.keptFor(y).get(0)), gpuBf16.toHost(dq),
                        gpuBf16.toHost(dk), gpuBf16.toHost(dv)};
            }
            String[] names = {"y", "lse", "dq", "dk", "dv"};
            for (int i = 0; i < names.length; i++) {
                double d2 = 0, n2 = 0, diff = 0, max = 0;
                for (int j = 0; j < got[0][i].length; j++) {
                    double a = got[0][i][j], b = got[1][i][j];
                    assertFalse(Double.isNaN(b), names[i] + " NaN at " + j);
                    d2 += (a - b) * (a - b);
                    n2 += a * a;
                    diff = Math.max(diff, Math.abs(a - b));
                    max = Math.max(max, Math.abs(a));
                }
                double rel = Math.sqrt(d2 / Math.max(n2, 1e-30)), top = diff / Math.max(max, 1e-30);
                String what = "second vs first flash kernels d=" + d + " " + names[i];
                System.out.printf("%s: relative L2 %.2e, max %.2e%n", what, rel, top);
                assertTrue(rel <= (i == 1 ? 1e-6 : 1e-3) && top <= (i == 1 ? 1e-5 : 5e-3),
                        String.format("%s: relative L2 %.3e, max difference / max %.3e", what, rel, top));
            }
        }
    }

    @Test
    void productAttentionForwardMatchesTheTiledKernel() {
        int n = 1100, hq = 4, hkv = 2, d = 64;
        float[] q = rand(n * hq * d, 1f), k = rand(n * hkv * d, 1f), v = rand(n * hkv * d, 1f);
        AttentionMask mask = AttentionMask.causal(0);
        Tensor ref = Tensor.of(cpu.toHost(cpu.attention(Tensor.of(q, n, hq * d), Tensor.of(k, n, hkv * d), Tensor.of(v, n, hkv * d),
                n, hq, hkv, mask)), n, hq * d);
        Tensor got = gpuBf16.attention(gpuBf16.fromHost(q, n, hq * d), gpuBf16.fromHost(k, n, hkv * d), gpuBf16.fromHost(v, n, hkv * d),
                n, hq, hkv, mask);
        assertClose(new Pair(ref, got), gpuBf16, 2e-2, "causal GQA forward as products (bf16) vs CPU");
    }

    /**
     * The fused LoRA down-projection (forward and backward, the mask drawn in the kernels) against the host
     * composition: {@code h = scale * dropout(x) A^T}, {@code dA += scale * dh^T dropout(x)},
     * {@code dx += scale * dropout(dh A)}; ranks 1, 8 and 16, widths off the 256-column tiles, with and without dropout.
     */
    @Test
    void fusedLoraDownMatchesTheComposition() {
        assertTrue(gpu.gradOps().fusesLoraDown(16) && !gpu.gradOps().fusesLoraDown(17), "fused for ranks up to 16");
        int[][] shapes = {{37, 100, 8}, {300, 1000, 16}, {2048, 576, 1}, {130, 4096, 8}};
        for (int[] sh : shapes)
            for (float p : new float[]{0f, 0.1f}) {
                int n = sh[0], in = sh[1], r = sh[2];
                long seed = 0x5eedL + n;
                float scale = 4f;
                String what = "loraDown n=" + n + " in=" + in + " r=" + r + " p=" + p;
                Pair x = rnd(gpu, 1f, n, in), a = rnd(gpu, 0.05f, r, in), dh = rnd(gpu, 1f, n, r);
                // host reference: the composition of Backend's default
                Tensor xin = p > 0 ? cpu.dropout(x.h, p, seed) : x.h;
                float[] want = cpu.scale(cpu.linear(xin, a.h, null), scale).heapFloats();
                float[] got = gpu.toHost(gpu.loraDown(x.d, a.d, scale, p, seed));
                assertClose(new Pair(Tensor.of(want, n, r), gpu.fromHost(got, n, r)), gpu, 2e-6, what + " forward");
                Pair dx = acc(gpu, n, in), da = acc(gpu, r, in);
                Tensor dhs = cpu.scale(dh.h, scale), gx = cpu.zeros(n, in);
                host().linearDx(dhs, a.h, gx);
                if (p > 0) host().addDropout(dx.h, gx, p, seed);
                else host().axpy(dx.h, gx, 1f);
                host().linearDw(dhs, xin, da.h, null);
                gpu.gradOps().loraDownBackward(dh.d, x.d, a.d, scale, p, seed, dx.d, da.d);
                assertClose(dx, gpu, 2e-6, what + " dx");
                assertClose(da, gpu, 2e-6, what + " dA");
            }
    }

    /**
     * bf16 mode keeps large saved activations in bf16 ({@link GradOps#compact}; float32 mode and small tensors as they
     * are): {@link GradOps#expand} gives the bf16-rounded values back, and the backwards that read the compact form
     * directly (RMSNorm, SwiGLU, the LoRA down-projection's dA) give the same results as from the expanded tensors.
     */
    @Test
    void compactSavedActivations() {
        GradOps ops = gpuBf16.gradOps();
        int n = 300, d = 512;   // 153,600 elements: compacted
        Pair x = rnd(gpuBf16, 1f, n, d), up = rnd(gpuBf16, 1f, n, d);
        assertEquals(DType.F32, gpu.gradOps().compact(gpu.fromHost(x.h.heapFloats(), n, d)).dtype(), "float32 mode keeps float32");
        Tensor small = gpuBf16.fromHost(rand(64, 1f), 8, 8);
        assertSame(small, ops.compact(small), "a small activation is kept as it is");
        Tensor c = ops.compact(x.d), cu = ops.compact(up.d);
        assertEquals(DType.BF16, c.dtype());
        float[] want = x.h.heapFloats(), back = gpuBf16.toHost(ops.expand(c));
        for (int i = 0; i < want.length; i++)
            assertTrue(Math.abs(back[i] - want[i]) <= Math.abs(want[i]) / 256, "element " + i + ": " + want[i] + " kept as " + back[i]);
        Tensor xe = ops.expand(c), ue = ops.expand(cu), dy = gpuBf16.fromHost(rand(n * d, 1f), n, d), w = gpuBf16.fromHost(rand(d, 1f), d);
        // RMSNorm backward: dx from the compact and the expanded input
        Tensor dx1 = gpuBf16.zeros(n, d), dx2 = gpuBf16.zeros(n, d);
        ops.rmsNorm(dy, c, w, 1e-6f, dx1, null);
        ops.rmsNorm(dy, xe, w, 1e-6f, dx2, null);
        assertArrayEquals(gpuBf16.toHost(dx2), gpuBf16.toHost(dx1), "rmsNorm backward from bf16 x");
        // SwiGLU backward
        Tensor dg1 = gpuBf16.zeros(n, d), du1 = gpuBf16.zeros(n, d), dg2 = gpuBf16.zeros(n, d), du2 = gpuBf16.zeros(n, d);
        ops.siluMul(dy, c, cu, dg1, du1);
        ops.siluMul(dy, xe, ue, dg2, du2);
        assertArrayEquals(gpuBf16.toHost(dg2), gpuBf16.toHost(dg1), "siluMul backward (gate) from bf16");
        assertArrayEquals(gpuBf16.toHost(du2), gpuBf16.toHost(du1), "siluMul backward (up) from bf16");
        // which also leaves the gradients' bf16 copies (the gate and up products' backward operands)
        assertCopyOf(dg1, "gate gradient");
        assertCopyOf(du1, "up gradient");
        // LoRA down-projection dA (deterministic: parts summed in order)
        int r = 8;
        Tensor a = gpuBf16.fromHost(rand(r * d, 0.05f), r, d), dh = gpuBf16.fromHost(rand(n * r, 1f), n, r);
        Tensor da1 = gpuBf16.zeros(r, d), da2 = gpuBf16.zeros(r, d);
        ops.loraDownBackward(dh, c, a, 2f, 0.1f, 5L, null, da1);
        ops.loraDownBackward(dh, xe, a, 2f, 0.1f, 5L, null, da2);
        // (the bf16 kernel reads four columns a thread and splits the rows into other parts: same sums, another order)
        assertClose(new Pair(Tensor.of(gpuBf16.toHost(da2), r, d), da1), gpuBf16, 1e-6, "loraDown dA from bf16 x");
    }

    static float[] roundedBf16(float[] v) {
        float[] r = new float[v.length];
        for (int i = 0; i < v.length; i++) r[i] = Float.intBitsToFloat(CudaBackend.toBf16(v[i]) << 16);
        return r;
    }

    /** gpuBf16 holds t's bf16 copy, equal to t's values rounded. */
    static void assertCopyOf(Tensor t, String what) {
        java.lang.foreign.MemorySegment m = gpuBf16.cachedBf16(t);
        assertNotNull(m, "the " + what + "'s bf16 copy is cached");
        float[] w = roundedBf16(gpuBf16.toHost(t));
        byte[] got = gpuBf16.toHostBytes(m, 2L * w.length);
        for (int i = 0; i < w.length; i++)
            assertEquals(w[i], Float.intBitsToFloat(((got[2 * i] & 0xff) | (got[2 * i + 1] << 8)) << 16), what + " element " + i);
    }

    static Tensor nans(CudaBackend dev, long... shape) {
        float[] v = new float[(int) Tensor.numel(shape)];
        java.util.Arrays.fill(v, Float.NaN);
        return dev.fromHost(v, shape);
    }

    /**
     * A first contribution writes its gradient instead of adding to zeros: linearDx (beta 0) and the SwiGLU backward
     * into NaN-filled tensors give what adding to zeros gives (so the old contents are not read).
     */
    @Test
    void firstContributionsWriteWithoutReading() {
        for (CudaBackend dev : new CudaBackend[]{gpu, gpuBf16}) {
            GradOps ops = dev.gradOps();
            int n = 64, in = 96, out = 160;
            Tensor dy = dev.fromHost(rand(n * out, 1f), n, out), w = dev.fromHost(rand(out * in, 0.1f), out, in);
            Tensor add = dev.zeros(n, in), write = nans(dev, n, in);
            ops.linearDx(dy, w, add);
            ops.linearDx(dy, w, write, false);
            assertClose(new Pair(Tensor.of(dev.toHost(add), n, in), write), dev, 1e-6, dev.precision() + " linearDx written");
            Tensor g = dev.fromHost(rand(n * in, 1f), n, in), a = dev.fromHost(rand(n * in, 1f), n, in), u = dev.fromHost(rand(n * in, 1f), n, in);
            Tensor dg1 = dev.zeros(n, in), du1 = dev.zeros(n, in), dg2 = nans(dev, n, in), du2 = nans(dev, n, in);
            ops.siluMul(g, a, u, dg1, du1);
            ops.siluMul(g, a, u, dg2, du2, false);
            assertArrayEquals(dev.toHost(dg1), dev.toHost(dg2), dev.precision() + " siluMul gate gradient written");
            assertArrayEquals(dev.toHost(du1), dev.toHost(du2), dev.precision() + " siluMul up gradient written");
            // rotary backward (heads of 32) and a plain copy
            int heads = in / 32;
            Tensor cos = dev.fromHost(rand(n * 32, 1f), n, 32), sin = dev.fromHost(rand(n * 32, 1f), n, 32);
            Tensor dr1 = dev.zeros(n, in), dr2 = nans(dev, n, in);
            ops.rotary(g, heads, cos, sin, dr1);
            ops.rotary(g, heads, cos, sin, dr2, false);
            assertArrayEquals(dev.toHost(dr1), dev.toHost(dr2), dev.precision() + " rotary gradient written");
            if (dev == gpuBf16) assertCopyOf(dr2, "rotary gradient");
            Tensor c = nans(dev, n, in);
            ops.copy(c, g);
            assertArrayEquals(dev.toHost(g), dev.toHost(c), dev.precision() + " copy");
        }
        // the rotary forward of bf16 mode leaves the flash attention's bf16 operand
        int n = 40, heads = 3, d = 128;
        float[] xv = rand(n * heads * d, 1f);
        Tensor x = gpuBf16.fromHost(xv, n, heads * d), ref = gpu.fromHost(xv, n, heads * d);
        Tensor cos = gpuBf16.fromHost(rand(n * d, 1f), n, d), sin = gpuBf16.fromHost(rand(n * d, 1f), n, d);
        gpuBf16.rotary(x, heads, cos, sin);
        gpu.rotary(ref, heads, gpu.fromHost(gpuBf16.toHost(cos), n, d), gpu.fromHost(gpuBf16.toHost(sin), n, d));
        assertArrayEquals(gpu.toHost(ref), gpuBf16.toHost(x), "rotary with the bf16 copy written alongside");
        assertCopyOf(x, "rotary output");
    }

    /**
     * The SwiGLU forward of a training step writes the bf16 copies of its output and (kept) inputs in its one pass, the
     * output computed from the rounded inputs; a LoRA down-projection's dA then rebuilds the output's copy from the
     * kept inputs bit for bit instead of keeping it.
     */
    @Test
    void swiGluForwardWritesTheCompactCopies() {
        int n = 96, d = 1000;   // 4-value groups, more rows than decoding
        float[] gv = rand(n * d, 2f), uv = rand(n * d, 1f);
        Tensor g = gpuBf16.fromHost(gv, n, d), u = gpuBf16.fromHost(uv, n, d);
        Tensor plain = gpuBf16.siluMul(gpuBf16.fromHost(roundedBf16(gv), n, d), gpuBf16.fromHost(roundedBf16(uv), n, d));
        Tensor y = gpuBf16.siluMul(g, u, true);
        float[] want = gpuBf16.toHost(plain);
        assertArrayEquals(want, gpuBf16.toHost(y), "the output (from the rounded inputs)");
        Object[][] copies = {{y, roundedBf16(want), "output"}, {g, roundedBf16(gv), "gate"}, {u, roundedBf16(uv), "up"}};
        for (Object[] c : copies) {
            java.lang.foreign.MemorySegment m = gpuBf16.cachedBf16((Tensor) c[0]);
            assertNotNull(m, "the " + c[2] + "'s bf16 copy is cached");
            float[] w = (float[]) c[1];
            byte[] got = gpuBf16.toHostBytes(m, 2L * w.length);
            for (int i = 0; i < w.length; i++) {
                float v = Float.intBitsToFloat(((got[2 * i] & 0xff) | (got[2 * i + 1] << 8)) << 16);
                assertEquals(w[i], v, c[2] + " element " + i);
            }
        }
        GradOps ops = gpuBf16.gradOps();
        Tensor gc = ops.compact(g), uc = ops.compact(u), yc = ops.compact(y);
        assertTrue(ops.rebuildsSwiGlu(gc, uc) && ops.rebuildsSwiGluFor(8), "the kept inputs rebuild the output");
        int r = 8;
        Tensor a = gpuBf16.fromHost(rand(r * d, 0.05f), r, d), dh = gpuBf16.fromHost(rand(n * r, 1f), n, r);
        CudaGradOps cops = (CudaGradOps) ops;
        boolean atomic = cops.atomicSums;
        try {
            for (boolean inOrder : new boolean[]{true, false})
                for (float p : new float[]{0f, 0.1f}) {
                    cops.atomicSums = !inOrder;   // sums in order: bit for bit; atomically: the same up to the order
                    Tensor da1 = gpuBf16.zeros(r, d), da2 = gpuBf16.zeros(r, d);
                    ops.loraDownBackward(dh, yc, a, 2f, p, 9L, null, da1);
                    ops.loraDownBackwardOfSwiGlu(dh, gc, uc, a, 2f, p, 9L, null, da2);
                    if (inOrder) assertArrayEquals(gpuBf16.toHost(da1), gpuBf16.toHost(da2), "dA from the rebuilt SwiGLU output, p=" + p);
                    else assertClose(new Pair(Tensor.of(gpuBf16.toHost(da1), r, d), da2), gpuBf16, 1e-6, "atomic dA, rebuilt, p=" + p);
                }
        } finally {
            cops.atomicSums = atomic;
        }
        gpuBf16.siluMul(g, u);   // a forward that keeps nothing: the copies are no longer the ones its output came from
        assertFalse(ops.rebuildsSwiGlu(gc, uc), "only the last keeping forward's copies");
    }

    /**
     * bf16 mode runs the LoRA products on bf16 operands where the frozen products have them: the down-projection and
     * its dA from x's bf16 copy (16- and 8-byte loads), the up-projection's backward (dh = dy B, dB += dy^T h) from dy's
     * copy through the same kernels. Each equals the float32 computation on the rounded values (float32 accumulation),
     * with dropout too; float32 mode keeps float32.
     */
    @Test
    void loraProductsReadBf16OperandsInBf16Mode() {
        CudaGradOps cops = (CudaGradOps) gpuBf16.gradOps();
        boolean atomic = cops.atomicSums;
        try {
            for (boolean a : new boolean[]{false, true}) {
                cops.atomicSums = a;
                loraProductsOnBf16(cops);
            }
        } finally {
            cops.atomicSums = atomic;
        }
    }

    private void loraProductsOnBf16(GradOps ops) {
        for (int[] sh : new int[][]{{300, 512, 640, 8}, {37, 1032, 72, 3}, {129, 520, 8, 1}})
            for (float p : new float[]{0f, 0.1f}) {
                int n = sh[0], in = sh[1], out = sh[2], r = sh[3];
                String what = " atomic=" + ((CudaGradOps) ops).atomicSums + " n=" + n + " in=" + in + " out=" + out + " r=" + r + " p=" + p;
                long seed = 77L + n;
                float[] xv = rand(n * in, 1f), av = rand(r * in, 0.05f), dyv = rand(n * out, 1f), bv = rand(out * r, 0.05f), hv = rand(n * r, 1f);
                Tensor x = gpuBf16.fromHost(xv, n, in), a = gpuBf16.fromHost(av, r, in);
                gpuBf16.bf16Of(x);   // as the producer (RMSNorm, SwiGLU, attention) leaves it
                Tensor xr = Tensor.of(roundedBf16(xv), n, in), xin = p > 0 ? cpu.dropout(xr, p, seed) : xr;
                float[] want = cpu.scale(cpu.linear(xin, Tensor.of(av.clone(), r, in), null), 2f).heapFloats();
                assertClose(new Pair(Tensor.of(want, n, r), gpuBf16.loraDown(x, a, 2f, p, seed)), gpuBf16, 2e-6, "loraDown from bf16 x" + what);
                // dA from the compact x, and dx
                Tensor c = ops.compact(x), dh = gpuBf16.fromHost(hv, n, r);   // small x stays float32
                Tensor xs = c.dtype() == DType.BF16 ? xr : Tensor.of(xv.clone(), n, in), xsin = p > 0 ? cpu.dropout(xs, p, seed) : xs;
                Pair da = acc(gpuBf16, r, in), dx = acc(gpuBf16, n, in);
                Tensor dhs = cpu.scale(Tensor.of(hv.clone(), n, r), 2f), gx = cpu.zeros(n, in);
                host().linearDw(dhs, xsin, da.h, null);
                host().linearDx(dhs, Tensor.of(av.clone(), r, in), gx);
                if (p > 0) host().addDropout(dx.h, gx, p, seed);
                else host().axpy(dx.h, gx, 1f);
                ops.loraDownBackward(dh, c, a, 2f, p, seed, dx.d, da.d);
                assertClose(da, gpuBf16, 2e-6, "loraDown dA from " + c.dtype() + " x" + what);
                assertClose(dx, gpuBf16, 2e-6, "loraDown dx" + what);
                // up-projection backward: dh = dy B and dB += dy^T h, dy rounded
                Tensor dy = gpuBf16.fromHost(dyv, n, out), b = gpuBf16.fromHost(bv, out, r), h = gpuBf16.fromHost(hv, n, r);
                Tensor dyr = Tensor.of(roundedBf16(dyv), n, out);
                Pair dhu = acc(gpuBf16, n, r), db = acc(gpuBf16, out, r);
                host().linearDx(dyr, Tensor.of(bv.clone(), out, r), dhu.h);
                host().linearDw(dyr, Tensor.of(hv.clone(), n, r), db.h, null);
                ops.linearDx(dy, b, dhu.d);
                ops.linearDw(dy, h, db.d, null);
                double bound = r % 8 == 0 ? 2e-6 : 1e-2;   // other ranks: cuBLAS on bf16 operands (B and h rounded too)
                assertClose(dhu, gpuBf16, bound, "LoRA up backward dh" + what);
                assertClose(db, gpuBf16, bound, "LoRA up backward dB" + what);
            }
        // float32 mode: the float32 values
        int n = 300, out = 640, r = 8;
        float[] dyv = rand(n * out, 1f), bv = rand(out * r, 0.05f);
        Pair dh32 = acc(gpu, n, r);
        host().linearDx(Tensor.of(dyv.clone(), n, out), Tensor.of(bv.clone(), out, r), dh32.h);
        gpu.gradOps().linearDx(gpu.fromHost(dyv, n, out), gpu.fromHost(bv, out, r), dh32.d);
        assertClose(dh32, gpu, 2e-6, "float32 mode dh");
    }

    /** The bf16 conversion (8 values a thread where aligned, the rest one a thread) rounds as the host does. */
    @Test
    void bf16ConversionRoundsAsTheHost() {
        for (int count : new int[]{1, 7, 8, 9, 4096, 100_003})
            for (int skip : new int[]{0, 1, 4}) {   // a source 4 or 16 bytes past an aligned start
                float[] v = rand(count + skip, 3f);
                v[skip] = Float.NaN;
                if (count > 2) v[skip + 1] = 1.00390625f;   // halfway between two bf16 values: rounds to even
                Tensor x = gpuBf16.fromHost(v, count + skip);
                java.lang.foreign.MemorySegment out = gpuBf16.scratch(2L * count + 16);
                gpuBf16.toBf16(CudaBackend.addr(x) + 4L * skip, out.address(), count);
                byte[] got = gpuBf16.toHostBytes(out, 2L * count);
                for (int i = 0; i < count; i++) {
                    short want = CudaBackend.toBf16(v[skip + i]), g = (short) ((got[2 * i] & 0xff) | (got[2 * i + 1] << 8));
                    assertEquals(want, g, "count " + count + " skip " + skip + " element " + i + " (" + v[skip + i] + ")");
                }
            }
    }

    @Test
    void dropoutMaskIsTheHostOne() {
        int n = 10007;
        float[] x = rand(n, 1f);
        float p = 0.05f;
        long seed = 0x123456789abcL;
        float[] want = new Backend() {   // the interface default, on the host
            public dev.vlm4j.tensor.Device device() { return cpu.device(); }
            public Tensor upload(Tensor w) { return w; }
            public Tensor fromHost(float[] values, long... shape) { return Tensor.of(values, shape); }
            public float[] toHost(Tensor t) { return t.toFloatArray(); }
            public Tensor zeros(long... shape) { return Tensor.zeros(shape); }
            public Tensor linear(Tensor a, Tensor w, Tensor b) { throw new UnsupportedOperationException(); }
            public Tensor rmsNorm(Tensor a, Tensor w, float e) { throw new UnsupportedOperationException(); }
            public Tensor add(Tensor a, Tensor b) { throw new UnsupportedOperationException(); }
            public Tensor siluMul(Tensor a, Tensor b) { throw new UnsupportedOperationException(); }
            public Tensor gelu(Tensor a) { throw new UnsupportedOperationException(); }
            public Tensor embedding(Tensor t, int[] ids) { throw new UnsupportedOperationException(); }
            public Tensor gatherRows(Tensor a, int[] r) { throw new UnsupportedOperationException(); }
            public void scatterRows(Tensor a, int[] r, Tensor s) { throw new UnsupportedOperationException(); }
            public void copyRows(Tensor a, int r, Tensor s) { throw new UnsupportedOperationException(); }
            public Tensor columns(Tensor a, int f, int t) { throw new UnsupportedOperationException(); }
            public void rotary(Tensor a, int h, Tensor c, Tensor s) { throw new UnsupportedOperationException(); }
            public Tensor attention(Tensor q, Tensor k, Tensor v, int l, int a, int b, AttentionMask m) { throw new UnsupportedOperationException(); }
        }.dropout(Tensor.of(x, n), p, seed).heapFloats();
        float[] got = gpu.toHost(gpu.dropout(gpu.fromHost(x, n), p, seed));
        int kept = 0;
        for (int i = 0; i < n; i++) {
            assertEquals(Float.floatToIntBits(want[i]), Float.floatToIntBits(got[i]), "dropout element " + i);
            if (got[i] != 0) kept++;
        }
        assertTrue(Math.abs(kept / (double) n - 0.95) < 0.01, "kept fraction " + kept / (double) n);
    }

    @Test
    void scopedGivesMemoryBack() {
        gpu.synchronize();
        long before = gpu.bytesInUse()[0];
        for (int i = 0; i < 20; i++) {
            gpu.scoped(() -> {
                Tensor a = gpu.zeros(1024, 1024);
                gpu.add(gpu.add(a, a), a);
                return null;
            });
        }
        long after = gpu.bytesInUse()[0];
        assertTrue(after <= before, "20 scoped bodies of 12 MiB left " + (after - before) + " bytes in use");
        Tensor kept = gpu.scoped(() -> {
            Tensor a = gpu.zeros(1024, 1024);
            return gpu.add(gpu.add(a, a), a);
        });
        long withKept = gpu.bytesInUse()[0];
        assertTrue(withKept <= after + DevicePool.sizeClass(4L << 20), "more than the kept result stays in use: " + (withKept - after));
        gpu.zeros(1024, 1024);   // reuses a freed block; the kept one must not change
        assertEquals(0.0, gpu.gradOps().sumSquares(kept), "the kept tensor is intact (zeros)");
    }
}
