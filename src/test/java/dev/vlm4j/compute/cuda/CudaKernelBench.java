package dev.vlm4j.compute.cuda;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Single-kernel timings on {@link CudaBackend} (bf16): the batch-1 matrix-vector products of MiMo-VL-7B's decoder
 * shapes as achieved bandwidth, and the cost of a small kernel launched back to back (what a decode step pays per
 * norm/add/rotary launch). Each figure is the wall time of many queued launches between two synchronisations.
 * <pre>java ... dev.vlm4j.compute.cuda.CudaKernelBench [reps]</pre>
 */
public final class CudaKernelBench {
    public static void main(String[] args) {
        int reps = args.length > 0 ? Integer.parseInt(args[0]) : 200;
        CudaBackend be = CudaBackend.create(0, Precision.BF16);
        System.out.println("device: " + be.deviceName());
        int[][] shapes = {{4096, 4096}, {1024, 4096}, {6144, 4096}, {11008, 4096}, {22016, 4096}, {4096, 11008}, {151680, 4096}};
        try (Arena a = Arena.ofShared()) {
            for (int[] s : shapes) {
                int out = s[0], in = s[1];
                Tensor w = be.upload(randBf16(a, out, in));
                Tensor x = be.fromHost(randF32(in), 1, in);
                for (boolean fused : new boolean[]{false, true}) {
                    be.useFusedGemv(fused);
                    double us = graphMicros(be, "gemv" + out + "x" + in + fused, () -> be.linear(x, w, null), reps);
                    System.out.printf(Locale.ROOT, "gemv %6d x %5d %-6s: %8.2f us  %7.1f GB/s%n", out, in, fused ? "fused" : "warp",
                            us, 2.0 * out * in / us / 1e3);
                }
            }
            // the fused decode ops against their unfused compositions (warp-per-row kernel, separate launches)
            Tensor xq = be.fromHost(randF32(4096), 1, 4096);
            Tensor[] qkv = {be.upload(randBf16(a, 4096, 4096)), be.upload(randBf16(a, 1024, 4096)), be.upload(randBf16(a, 1024, 4096))};
            Tensor[] qkvB = {be.upload(randBf16(a, 4096)), be.upload(randBf16(a, 1024)), be.upload(randBf16(a, 1024))};
            Tensor gate = be.upload(randBf16(a, 11008, 4096)), up = be.upload(randBf16(a, 11008, 4096));
            Tensor down = be.upload(randBf16(a, 4096, 11008)), hmid = be.fromHost(randF32(11008), 1, 11008);
            java.util.Map<String, Runnable> ops = new java.util.LinkedHashMap<>();
            ops.put("q/k/v 4096+1024+1024 x 4096, bias", () -> be.linears(xq, qkv, qkvB));
            ops.put("gate/up SwiGLU 2 x 11008 x 4096", () -> be.swiGlu(xq, gate, up));
            ops.put("down + residual 4096 x 11008", () -> be.addLinear(xq, hmid, down));
            ops.put("o_proj + residual 4096 x 4096", () -> be.addLinear(xq, xq, qkv[0]));
            long[] bytes = {2L * 6144 * 4096, 4L * 11008 * 4096, 2L * 11008 * 4096, 2L * 4096 * 4096};
            int k = 0;
            for (var e : ops.entrySet()) {
                for (boolean fused : new boolean[]{false, true}) {
                    be.useFusedGemv(fused);
                    double us = graphMicros(be, e.getKey() + fused, e.getValue(), reps);
                    System.out.printf(Locale.ROOT, "%-36s %-7s: %8.2f us  %7.1f GB/s%n", e.getKey(), fused ? "fused" : "unfused",
                            us, bytes[k] / us / 1e3);
                }
                k++;
            }
            be.useFusedGemv(true);
            Tensor x = be.fromHost(randF32(4096), 1, 4096), nw = be.upload(randBf16(a, 4096));
            for (String op : new String[]{"rmsNorm", "add"}) {
                be.synchronize();
                long t0 = System.nanoTime();
                for (int i = 0; i < 20 * reps; i++) {
                    if (op.equals("rmsNorm")) be.rmsNorm(x, nw, 1e-6f);
                    else be.add(x, x);
                }
                be.synchronize();
                System.out.printf(Locale.ROOT, "%-8s [1, 4096] back to back: %6.2f us per launch%n", op, (System.nanoTime() - t0) / 1e3 / (20 * reps));
            }
        }
        be.close();
    }

    /** GPU time of one {@code op}, in microseconds: 20 per CUDA graph, the graph replayed reps / 20 times after two warm-ups. */
    static double graphMicros(CudaBackend be, Object key, Runnable op, int reps) {
        Runnable step = () -> be.graph(key, () -> {
            for (int i = 0; i < 20; i++) op.run();
            return null;
        });
        step.run();
        step.run();
        be.synchronize();
        long t0 = System.nanoTime();
        for (int i = 0; i < reps / 20; i++) step.run();
        be.synchronize();
        return (System.nanoTime() - t0) / 1e3 / (reps / 20 * 20);
    }

    static float[] randF32(int n) {
        SplittableRandom r = new SplittableRandom(7);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) (r.nextDouble() * 2 - 1);
        return v;
    }

    static Tensor randBf16(Arena a, long... shape) {
        long n = Tensor.numel(shape);
        MemorySegment s = a.allocate(n * 2, 64);
        SplittableRandom r = new SplittableRandom(3);
        for (long i = 0; i < n; i++) s.setAtIndex(ValueLayout.JAVA_SHORT_UNALIGNED, i, CudaBackend.toBf16((float) ((r.nextDouble() * 2 - 1) * 0.03)));
        return new Tensor(DType.BF16, shape, s, Device.CPU);
    }
}
