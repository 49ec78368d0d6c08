package dev.vlm4j.compute.cuda;

import dev.vlm4j.tensor.Tensor;

import java.util.Locale;
import java.util.SplittableRandom;

/**
 * Manual probe: the fused LoRA down-projection kernels (forward, dA, dx) at the 7B training shapes (2048 rows; 3584
 * and 18944 wide, rank 8, dropout 0.05; dA from float32 and from bf16 x), each timed over
 * replays of a captured graph (GPU time only), as achieved GB/s of x read (dx: read and written).
 * <pre>java ... dev.vlm4j.compute.cuda.LoraKernelRace [reps]</pre>
 */
public final class LoraKernelRace {
    public static void main(String[] args) {
        int reps = args.length > 0 ? Integer.parseInt(args[0]) : 50;
        CudaBackend be = CudaBackend.create(0, Precision.BF16);
        System.out.println("device: " + be.deviceName());
        CudaGradOps ops = (CudaGradOps) be.gradOps();
        SplittableRandom rnd = new SplittableRandom(3);
        for (int in : new int[]{3584, 18944}) {
            int n = 2048, r = 8;
            Tensor x = be.fromHost(rand(rnd, n * in), n, in), a = be.fromHost(rand(rnd, r * in), r, in), dh = be.fromHost(rand(rnd, n * r), n, r);
            Tensor dx = be.zeros(n, in), da = be.zeros(r, in);
            double gb = 4.0 * n * in / 1e9;
            double fw = time(be, reps, () -> be.loraDown(x, a, 4f, 0.05f, 11L));
            System.out.printf(Locale.ROOT, "in %5d forward:            %7.1f us  %6.0f GB/s%n", in, fw * 1e3, gb / fw * 1e3);
            Tensor xb = ops.compact(x);
            for (Tensor xs : new Tensor[]{x, xb}) {
                double ms = time(be, reps, () -> ops.loraDownBackward(dh, xs, a, 4f, 0.05f, 11L, null, da));
                double bytes = gb * (xs.dtype() == dev.vlm4j.tensor.DType.BF16 ? 0.5 : 1);
                System.out.printf(Locale.ROOT, "in %5d dA from %-5s:     %7.1f us  %6.0f GB/s%n", in, xs.dtype(), ms * 1e3, bytes / ms * 1e3);
            }
            double ms = time(be, reps, () -> ops.loraDownBackward(dh, x, a, 4f, 0.05f, 11L, dx, null));
            System.out.printf(Locale.ROOT, "in %5d dx:                 %7.1f us  %6.0f GB/s%n", in, ms * 1e3, 2 * gb / ms * 1e3);
        }
        be.close();
    }

    private static int key;

    /** Milliseconds per op on the GPU: replays of a graph of 20 ops (no host time in between). */
    private static double time(CudaBackend be, int reps, Runnable op) {
        return CudaKernelBench.graphMicros(be, "lora" + key++, op, reps) / 1e3;
    }

    private static float[] rand(SplittableRandom rnd, int n) {
        float[] v = new float[n];
        for (int i = 0; i < n; i++) v[i] = (float) rnd.nextGaussian();
        return v;
    }
}
