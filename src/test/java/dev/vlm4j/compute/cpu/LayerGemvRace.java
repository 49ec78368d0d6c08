package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Quant;
import dev.vlm4j.tensor.Tensor;

/**
 * Manual probe: one decode token's matrix-vector products of a Qwen2.5-VL-3B-shaped decoder (36 layers of q, k, v,
 * o, gate, up, down; hidden 2048, MLP 11008, 2 KV heads of 128) in Q8_0, all weights in DRAM, against one matrix of
 * the same total size: how much the many small products cost beyond streaming the bytes.
 * {@code java ... LayerGemvRace [rounds]}
 */
public final class LayerGemvRace {
    public static void main(String[] a) {
        int rounds = a.length > 0 ? Integer.parseInt(a[0]) : 6, layers = Integer.getInteger("layers", 36);
        int h = 2048, m = 11008, kv = 256;
        int[][] shapes = {{h, h}, {kv, h}, {kv, h}, {h, h}, {m, h}, {m, h}, {h, m}};
        Tensor[][] w = new Tensor[layers][shapes.length];
        long bytes = 0;
        float[] src = CpuKernelsTest.randn(m * h, 1, 0.02f);
        for (int l = 0; l < layers; l++)
            for (int i = 0; i < shapes.length; i++) {
                w[l][i] = Quant.quantize(Tensor.of(java.util.Arrays.copyOf(src, shapes[i][0] * shapes[i][1]), shapes[i][0], shapes[i][1]), DType.Q8_0);
                bytes += Quant.bytesOf(w[l][i]);
            }
        float[] xh = CpuKernelsTest.randn(m, 2, 1f);
        double[] gbs = new double[rounds], bw = new double[rounds];
        for (int r = 0; r < rounds; r++) {
            bw[r] = MachineLimits.readBandwidth(1L << 30, 1) / 1e9;
            long t0 = System.nanoTime();
            for (int l = 0; l < layers; l++) {
                float[] x = java.util.Arrays.copyOf(xh, h);
                if (Boolean.getBoolean("fused")) {
                    Gemv.quantMany(x, 1, h, new Tensor[]{w[l][0], w[l][1], w[l][2]}, new float[][]{new float[h], new float[256], new float[256]});
                    MatMul.linear(x, 1, h, w[l][3], null);
                    Gemv.quantMany(x, 1, h, new Tensor[]{w[l][4], w[l][5]}, new float[][]{new float[m], new float[m]});
                } else {
                    for (int i = 0; i < 6; i++) MatMul.linear(x, 1, h, w[l][i], null);
                }
                MatMul.linear(xh, 1, m, w[l][6], null);
            }
            gbs[r] = bytes / ((System.nanoTime() - t0) / 1e9) / 1e9;
        }
        java.util.Arrays.sort(gbs);
        java.util.Arrays.sort(bw);
        System.out.printf("%d products, %.2f GB: best %.1f GB/s, median %.1f GB/s; read bandwidth best %.1f median %.1f GB/s%n",
                layers * shapes.length, bytes / 1e9, gbs[rounds - 1], gbs[rounds / 2], bw[rounds - 1], bw[rounds / 2]);
    }
}
