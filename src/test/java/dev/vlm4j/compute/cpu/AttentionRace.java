package dev.vlm4j.compute.cpu;

import dev.vlm4j.compute.AttentionMask;

/**
 * Manual probe: the Vector API and the C attention kernels alternating, best GFLOP/s of each next to the FMA peak,
 * and their largest difference (args: n hq hkv d rounds [window]; window > 0: ViT-like segments of that many rows).
 */
public final class AttentionRace {
    public static void main(String[] a) {
        int n = Integer.parseInt(a[0]), hq = Integer.parseInt(a[1]), hkv = Integer.parseInt(a[2]), d = Integer.parseInt(a[3]);
        int rounds = Integer.parseInt(a[4]), window = a.length > 5 ? Integer.parseInt(a[5]) : 0;
        float[] q = CpuKernelsTest.randn(n * hq * d, 3, 1f), k = CpuKernelsTest.randn(n * hkv * d, 4, 1f), v = CpuKernelsTest.randn(n * hkv * d, 5, 1f);
        AttentionMask mask;
        double pairs;
        if (window > 0) {
            int segs = (n + window - 1) / window;
            int[] cu = new int[segs + 1];
            pairs = 0;
            for (int s = 0; s < segs; s++) { cu[s + 1] = Math.min(n, (s + 1) * window); pairs += (double) (cu[s + 1] - cu[s]) * (cu[s + 1] - cu[s]); }
            mask = AttentionMask.segments(cu);
        } else {
            mask = AttentionMask.causal(0);
            pairs = n * (n + 1) / 2.0;
        }
        double fl = 4.0 * hq * d * pairs, peak = 0;
        double[] best = new double[2];
        float[][] outs = new float[2][];
        for (int r = 0; r < rounds; r++) {
            peak = Math.max(peak, MachineLimits.peakFlops(20_000_000, 1));
            for (int i = 0; i < 2; i++) {
                long t0 = System.nanoTime();
                outs[i] = Attention.compute(q, n, k, v, n, hq, hkv, d, mask, i == 1).toFloatArray();
                best[i] = Math.max(best[i], fl / ((System.nanoTime() - t0) / 1e9));
            }
        }
        double diff = 0;
        for (int i = 0; i < outs[0].length; i++) diff = Math.max(diff, Math.abs(outs[0][i] - outs[1][i]));
        System.out.printf("attention n=%d hq=%d hkv=%d d=%d %s: peak %.1f GFLOP/s; Vector API %.1f (%.3f), C %.1f (%.3f); max |diff| %.2e%n",
                n, hq, hkv, d, window > 0 ? "segments of " + window : "causal", peak / 1e9, best[0] / 1e9, best[0] / peak, best[1] / 1e9,
                best[1] / peak, diff);
    }
}
