package dev.vlm4j.compute.cpu;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The argmax of a row of host floats (greedy decoding over a vocabulary), with the Vector API when it is available:
 * the index of the largest value, lowest index on ties; NaN is never chosen unless all values are NaN (then 0).
 */
public final class Argmax {
    private Argmax() {}

    /** The argmax of {@code x[offset, offset + n)}, as an index in [0, n). */
    public static int of(float[] x, int offset, int n) {
        return Simd.AVAILABLE ? Vectorized.of(x, offset, n) : scalar(x, offset, n);
    }

    static int scalar(float[] x, int offset, int n) {
        int best = offset;
        float bv = Float.NEGATIVE_INFINITY;
        boolean found = false;
        for (int i = offset, end = offset + n; i < end; i++) {
            if (x[i] > bv || (!found && x[i] == bv)) { bv = x[i]; best = i; found = true; }
        }
        return best - offset;
    }

    /** Isolated so the vector classes are only touched once the module is known to be there. */
    private static final class Vectorized {
        static final VectorSpecies<Float> F = MatMul.F;
        static final VectorSpecies<Integer> I = VectorSpecies.of(int.class, F.vectorShape());
        static final int L = F.length();

        /**
         * Each lane keeps its largest value (strictly greater replaces, so NaN never enters) and the index where it
         * first appeared; the answer is the lowest index among the lanes holding the overall largest value.
         */
        static int of(float[] x, int offset, int n) {
            int vn = n - n % L;
            if (vn == 0) return scalar(x, offset, n);
            FloatVector best = FloatVector.broadcast(F, Float.NEGATIVE_INFINITY);
            IntVector at = IntVector.zero(I), idx = IntVector.zero(I).addIndex(1), step = IntVector.broadcast(I, L);
            for (int i = 0; i < vn; i += L) {
                FloatVector v = FloatVector.fromArray(F, x, offset + i);
                VectorMask<Float> gt = v.compare(VectorOperators.GT, best);
                best = best.blend(v, gt);
                at = at.blend(idx, gt.cast(I));
                idx = idx.add(step);
            }
            float max = best.reduceLanes(VectorOperators.MAX);
            if (max == Float.NEGATIVE_INFINITY) return scalar(x, offset, n); // only -inf and NaN: rare, exact rules
            int first = at.blend(Integer.MAX_VALUE, best.compare(VectorOperators.NE, max).cast(I)).reduceLanes(VectorOperators.MIN);
            for (int i = vn; i < n; i++) if (x[offset + i] > max) { max = x[offset + i]; first = i; }
            return first;
        }
    }
}
