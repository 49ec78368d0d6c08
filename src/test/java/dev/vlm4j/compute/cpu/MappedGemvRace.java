package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;

import java.nio.file.Path;

/** Manual probe: bf16 matrix-vector on a checkpoint's memory-mapped tensor, old row kernel vs the paired one. */
public final class MappedGemvRace {
    public static void main(String[] a) {
        Checkpoint ck = Checkpoint.open(Path.of(a[0]));
        Tensor w = ck.get(a[1]);
        int out = (int) w.dim(0), in = (int) w.dim(1), rounds = Integer.parseInt(a[2]);
        float[] x = CpuKernelsTest.randn(in, 2, 1f), y = new float[out];
        System.out.println(w + " native=" + w.data().isNative() + " mapped=" + w.data().isMapped() + " addr%64=" + w.data().address() % 64);
        double[] best = new double[2];
        long bytes = 2L * out * in;
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < 2; i++) {
                long t0 = System.nanoTime();
                if (i == 0) GemvRace.bf16old(x, in, w.data(), out, y);
                else MatMul.linear(x, 1, in, w, null);
                best[i] = Math.max(best[i], bytes / ((System.nanoTime() - t0) / 1e9) / 1e9);
            }
        System.out.printf("old %.1f GB/s, new %.1f GB/s%n", best[0], best[1]);
    }
}
