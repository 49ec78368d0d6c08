package dev.vlm4j.compute.cpu;

import dev.vlm4j.tensor.Tensor;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorSpecies;

/** The packed GEMM before activation packing (kept for GemmRace comparisons). */
final class GemmOld {
    static final VectorSpecies<Float> F = MatMul.F;
    private static final int L = F.length();
    static final int NR = 2 * L, MR = 6, KC = 256, BLK = 32;

    static float[] linear(float[] x, int n, int in, Tensor w) {
        int out = (int) w.dim(0);
        float[] y = new float[n * out];
        gemm(x, n, in, w, out, y);
        return y;
    }

    // ---------------------------------------------------------------- packed GEMM (prefill, vision)

    static void gemm(float[] x, int n, int in, Tensor w, int out, float[] y) {
        int panels = (out + NR - 1) / NR;
        Parallel.forRange(panels, 1, (p0, p1) -> {
            float[] panel = new float[KC * NR], row = new float[KC + BLK], tile = new float[MR * NR];
            for (int k0 = 0; k0 < in; k0 += KC) {
                int kc = Math.min(KC, in - k0);
                boolean accumulate = k0 > 0;
                for (int p = p0; p < p1; p++) {
                    int j0 = p * NR, cols = Math.min(NR, out - j0);
                    pack(w, in, j0, cols, k0, kc, panel, row);
                    int i0 = 0;
                    if (cols == NR) for (; i0 + MR <= n; i0 += MR) kernel6(x, i0 * in + k0, in, panel, kc, y, i0 * out + j0, out, accumulate);
                    for (; i0 < n; i0 += MR) {
                        int r = Math.min(MR, n - i0);
                        kernelTail(x, i0 * in + k0, in, r, panel, kc, tile);
                        for (int a = 0; a < r; a++) {
                            int yo = (i0 + a) * out + j0;
                            for (int c = 0; c < cols; c++) y[yo + c] = (accumulate ? y[yo + c] : 0f) + tile[a * NR + c];
                        }
                    }
                }
            }
        });
    }

    /** panel[kk * NR + c] = w[j0 + c, k0 + kk] as float32, zero for c >= cols. */
    private static void pack(Tensor w, int in, int j0, int cols, int k0, int kc, float[] panel, float[] row) {
        if (cols < NR) java.util.Arrays.fill(panel, 0f);
        for (int c = 0; c < cols; c++) {
            MatMul.rowSlice(w, in, j0 + c, k0, kc, row);
            for (int kk = 0; kk < kc; kk++) panel[kk * NR + c] = row[kk];
        }
    }

    /** y[6 rows, NR cols] (+)= x[6 rows, kc] * panel[kc, NR]. */
    private static void kernel6(float[] x, int xo, int ldx, float[] p, int kc, float[] y, int yo, int ldy, boolean acc) {
        FloatVector c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51;
        int y0 = yo, y1 = y0 + ldy, y2 = y1 + ldy, y3 = y2 + ldy, y4 = y3 + ldy, y5 = y4 + ldy;
        if (acc) {
            c00 = FloatVector.fromArray(F, y, y0); c01 = FloatVector.fromArray(F, y, y0 + L);
            c10 = FloatVector.fromArray(F, y, y1); c11 = FloatVector.fromArray(F, y, y1 + L);
            c20 = FloatVector.fromArray(F, y, y2); c21 = FloatVector.fromArray(F, y, y2 + L);
            c30 = FloatVector.fromArray(F, y, y3); c31 = FloatVector.fromArray(F, y, y3 + L);
            c40 = FloatVector.fromArray(F, y, y4); c41 = FloatVector.fromArray(F, y, y4 + L);
            c50 = FloatVector.fromArray(F, y, y5); c51 = FloatVector.fromArray(F, y, y5 + L);
        } else {
            c00 = c01 = c10 = c11 = c20 = c21 = c30 = c31 = c40 = c41 = c50 = c51 = FloatVector.zero(F);
        }
        int x0 = xo, x1 = x0 + ldx, x2 = x1 + ldx, x3 = x2 + ldx, x4 = x3 + ldx, x5 = x4 + ldx;
        for (int k = 0; k < kc; k++) {
            FloatVector w0 = FloatVector.fromArray(F, p, k * NR), w1 = FloatVector.fromArray(F, p, k * NR + L);
            FloatVector a = FloatVector.broadcast(F, x[x0 + k]);
            c00 = w0.fma(a, c00); c01 = w1.fma(a, c01);
            a = FloatVector.broadcast(F, x[x1 + k]);
            c10 = w0.fma(a, c10); c11 = w1.fma(a, c11);
            a = FloatVector.broadcast(F, x[x2 + k]);
            c20 = w0.fma(a, c20); c21 = w1.fma(a, c21);
            a = FloatVector.broadcast(F, x[x3 + k]);
            c30 = w0.fma(a, c30); c31 = w1.fma(a, c31);
            a = FloatVector.broadcast(F, x[x4 + k]);
            c40 = w0.fma(a, c40); c41 = w1.fma(a, c41);
            a = FloatVector.broadcast(F, x[x5 + k]);
            c50 = w0.fma(a, c50); c51 = w1.fma(a, c51);
        }
        c00.intoArray(y, y0); c01.intoArray(y, y0 + L);
        c10.intoArray(y, y1); c11.intoArray(y, y1 + L);
        c20.intoArray(y, y2); c21.intoArray(y, y2 + L);
        c30.intoArray(y, y3); c31.intoArray(y, y3 + L);
        c40.intoArray(y, y4); c41.intoArray(y, y4 + L);
        c50.intoArray(y, y5); c51.intoArray(y, y5 + L);
    }

    /** tile[r rows, NR] = x[r rows, kc] * panel (r < 6 or a partial panel). */
    private static void kernelTail(float[] x, int xo, int ldx, int r, float[] p, int kc, float[] tile) {
        for (int a = 0; a < r; a++) {
            FloatVector c0 = FloatVector.zero(F), c1 = c0;
            int xr = xo + a * ldx;
            for (int k = 0; k < kc; k++) {
                FloatVector b = FloatVector.broadcast(F, x[xr + k]);
                c0 = FloatVector.fromArray(F, p, k * NR).fma(b, c0);
                c1 = FloatVector.fromArray(F, p, k * NR + L).fma(b, c1);
            }
            c0.intoArray(tile, a * NR);
            c1.intoArray(tile, a * NR + L);
        }
    }
}
