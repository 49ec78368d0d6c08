package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Small elementwise Vector API kernels. */
final class VectorOps {
    private static final VectorSpecies<Float> F = MatMul.F;

    private VectorOps() {}

    /** y[i] = silu(g[i]) * u[i] for i in [i0, i1). */
    static void siluMul(float[] g, float[] u, float[] y, int i0, int i1) {
        int i = i0, L = F.length();
        for (; i <= i1 - L; i += L) {
            FloatVector gv = FloatVector.fromArray(F, g, i);
            FloatVector e = gv.neg().lanewise(VectorOperators.EXP).add(1f);
            gv.div(e).mul(FloatVector.fromArray(F, u, i)).intoArray(y, i);
        }
        ScalarKernels.siluMul(g, u, y, i, i1);
    }
}
