package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.Tensor;

/** Plain-Java kernels: the fallback without the Vector API, and the reference the vector kernels are tested against. */
final class ScalarKernels {
    private ScalarKernels() {}

    /** {@code y = x W^T + b} for any weight dtype (quantized rows are dequantized one at a time). */
    static float[] linear(float[] x, int n, int in, Tensor w, float[] bias) {
        int out = (int) w.dim(0);
        float[] y = new float[n * out];
        Parallel.forRange(out, 16, (j0, j1) -> {
            float[] row = new float[in];
            for (int j = j0; j < j1; j++) {
                for (int k = 0; k < in; k++) row[k] = w.getFloat((long) j * in + k);
                for (int i = 0; i < n; i++) {
                    float s = 0;
                    for (int k = 0; k < in; k++) s += x[i * in + k] * row[k];
                    y[i * out + j] = s + (bias == null ? 0f : bias[j]);
                }
            }
        });
        return y;
    }

    static void siluMul(float[] g, float[] u, float[] y, int i0, int i1) {
        for (int i = i0; i < i1; i++) y[i] = g[i] / (1f + (float) Math.exp(-g[i])) * u[i];
    }
}
