package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Small elementwise Vector API kernels. */
final class VectorOps {
    private static final VectorSpecies<Float> F = MatMul.F;
    private static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
    private static final VectorSpecies<Byte> B = VectorSpecies.of(byte.class,
            jdk.incubator.vector.VectorShape.forBitSize(Math.max(64, F.length() * 8)));

    private VectorOps() {}

    /**
     * Q8_0 quantization of a zero-padded row, bit-identical to {@link dev.vlm4j.tensor.Quant}'s scalar code
     * (f16 scale of max|x|/127, round half away from zero, clamp to 127).
     */
    static void quantizeQ8(float[] row, int nb, byte[] q, short[] scales) {
        int L = F.length();
        if (32 % L != 0) throw new IllegalStateException("vector length " + L);
        for (int b = 0; b < nb; b++) {
            int o = b * 32;
            FloatVector amax = FloatVector.zero(F);
            for (int s = 0; s < 32; s += L) amax = amax.max(FloatVector.fromArray(F, row, o + s).abs());
            short dh = Float.floatToFloat16(amax.reduceLanes(VectorOperators.MAX) / 127f);
            float d = Float.float16ToFloat(dh), id = d == 0 ? 0 : 1f / d;
            scales[b] = dh;
            for (int s = 0; s < 32; s += L) {
                FloatVector v = FloatVector.fromArray(F, row, o + s).mul(id).max(-127f).min(127f);
                FloatVector half = FloatVector.broadcast(F, 0.5f).blend(-0.5f, v.lt(0f));
                ((jdk.incubator.vector.ByteVector) v.add(half).convertShape(VectorOperators.F2I, I, 0).convertShape(VectorOperators.I2B, B, 0))
                        .intoArray(q, o + s);
            }
        }
    }

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
