package dev.vlm4j.compute.cuda;

import dev.vlm4j.compute.AttentionMask;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.MemorySegment;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Manual probe: the tensor-core flash attention kernels, first ({@code flash_kernels.cu}) against second
 * ({@code flash2_kernels.cu}), at the 7B training shape (one layer: n = kvLen = 2048 causal, 28 query heads over 4 KV
 * heads, head size 128; other shapes by argument). Each kernel is timed alone on bf16 operands over replays of a
 * captured graph (GPU time only): microseconds per call and TFLOP/s counting the causal FLOPs (forward 2 products,
 * backward 5, 2 n kvLen d flops each, halved under the causal mask). Then the largest difference between the two
 * kernels' outputs (y, lse, dq, dk, dv from zero) relative to the largest magnitude of the first kernel's.
 * <pre>java ... dev.vlm4j.compute.cuda.FlashKernelRace [reps [n [hq [hkv [d [causal 1|0]]]]]]</pre>
 */
public final class FlashKernelRace {
    public static void main(String[] args) {
        int reps = args.length > 0 ? Integer.parseInt(args[0]) : 100;
        int n = args.length > 1 ? Integer.parseInt(args[1]) : 2048, hq = args.length > 2 ? Integer.parseInt(args[2]) : 28;
        int hkv = args.length > 3 ? Integer.parseInt(args[3]) : 4, d = args.length > 4 ? Integer.parseInt(args[4]) : 128;
        boolean causal = args.length <= 5 || !"0".equals(args[5]);
        CudaBackend be = CudaBackend.create(0, Precision.BF16);
        System.out.println("device: " + be.deviceName() + ", second kernels loaded: " + be.flashV2);
        System.out.printf(Locale.ROOT, "n = kvLen = %d, heads %d/%d, d = %d, %s%n", n, hq, hkv, d, causal ? "causal" : "no mask");
        for (String k : new String[]{"flash_fwd_" + d, "flash_bwd_" + d, "flash_fwd2_" + d, "flash_bwd2_" + d}) {
            MemorySegment f = be.function(k);
            if (f == null) continue;
            System.out.printf(Locale.ROOT, "%-16s %3d registers, %d bytes local memory per thread (spills when > 0)%n", k,
                    be.drv.functionAttribute(f, CudaDriver.CU_FUNC_ATTRIBUTE_NUM_REGS),
                    be.drv.functionAttribute(f, CudaDriver.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES));
        }
        AttentionMask mask = causal ? AttentionMask.causal(0) : new AttentionMask(null, false, 0);
        SplittableRandom rnd = new SplittableRandom(5);
        Tensor q = be.fromHost(rand(rnd, n * hq * d), n, hq * d), k = be.fromHost(rand(rnd, n * hkv * d), n, hkv * d),
                v = be.fromHost(rand(rnd, n * hkv * d), n, hkv * d), dOut = be.fromHost(rand(rnd, n * hq * d), n, hq * d);
        MemorySegment qb = bf16(be, q), kb = bf16(be, k), vb = bf16(be, v), ob = bf16(be, dOut);
        double flops = 2.0 * n * n * d * hq * (causal ? 0.5 : 1.0);   // one product
        FlashAttention[] variants = {new FlashAttention(be, false), new FlashAttention(be, true)};
        float[][][] outs = new float[2][][];
        for (int var = 0; var < 2; var++) {
            FlashAttention f = variants[var];
            String name = var == 0 ? "first " : "second";
            if (var == 1 && !f.usesV2(d)) {
                System.out.println("second kernels not available for d = " + d);
                break;
            }
            Tensor y = be.zeros(n, (long) hq * d);
            MemorySegment yb = be.scratch(2L * n * hq * d), lse = be.scratch(4L * hq * n), dvec = be.scratch(4L * hq * n);
            Runnable fwd = () -> f.run(qb, kb, vb, y, yb, lse, n, d, n, hq, hkv, mask);
            fwd.run();
            // dvec = rowsum(dO y) as the backward computes it (same kernel for both)
            be.launch("flash_dvec", (int) (((long) n * hq * 32 + 255) / 256), 1, 256, 0, CudaBackend.addr(dOut), CudaBackend.addr(y),
                    dvec.address(), n, hq, d);
            Tensor dq = be.zeros(n, (long) hq * d), dk = be.zeros(n, (long) hkv * d), dv = be.zeros(n, (long) hkv * d);
            Runnable bwd = () -> f.runBackward(qb, kb, vb, ob, lse, dvec, dq, dk, dv, n, d, n, hq, hkv, mask);
            bwd.run();
            float[] lseHost = new float[hq * n];
            java.nio.ByteBuffer.wrap(be.toHostBytes(lse, 4L * hq * n)).order(java.nio.ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(lseHost);
            outs[var] = new float[][]{be.toHost(y), lseHost, be.toHost(dq), be.toHost(dk), be.toHost(dv)};
            double fu = CudaKernelBench.graphMicros(be, "flash-fwd" + var, fwd, reps);
            double bu = CudaKernelBench.graphMicros(be, "flash-bwd" + var, bwd, reps);
            System.out.printf(Locale.ROOT, "%s forward:  %8.1f us  %6.1f TFLOP/s%n", name, fu, 2 * flops / fu / 1e6);
            System.out.printf(Locale.ROOT, "%s backward: %8.1f us  %6.1f TFLOP/s%n", name, bu, 5 * flops / bu / 1e6);
        }
        if (outs[1] != null) {
            String[] names = {"y", "lse", "dq", "dk", "dv"};
            for (int i = 0; i < names.length; i++) {
                double max = 0, diff = 0;
                for (int j = 0; j < outs[0][i].length; j++) {
                    float a = outs[0][i][j], b = outs[1][i][j];
                    if (Float.isInfinite(a) && a == b) continue;   // lse of a query without keys
                    max = Math.max(max, Math.abs(a));
                    diff = Math.max(diff, Math.abs(a - b));
                }
                System.out.printf(Locale.ROOT, "%-3s max |second - first| / max |first| = %.3e%n", names[i], max > 0 ? diff / max : diff);
            }
        }
        be.close();
    }

    private static MemorySegment bf16(CudaBackend be, Tensor x) {
        long count = Tensor.numel(x.shape());
        MemorySegment out = be.scratch(2 * count);
        be.toBf16(CudaBackend.addr(x), out.address(), count);
        return out;
    }

    private static float[] rand(SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian();
        return v;
    }
}
