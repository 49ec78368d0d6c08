package dev.vlm4j.compute.cpu;

import java.lang.management.ManagementFactory;
import java.util.List;

/**
 * Whether the Vector API kernels can be used: the {@code jdk.incubator.vector} module must be present, vectors must
 * be at least 256 bits, and the JIT must be able to intrinsify them (no -Xint, C2 enabled). Otherwise the backend
 * falls back to scalar kernels and says so once on stderr.
 */
final class Simd {
    static final boolean AVAILABLE = check();

    private Simd() {}

    private static boolean check() {
        String why = null;
        if (Boolean.getBoolean("vlm4j.scalar")) why = "-Dvlm4j.scalar=true was given";
        else if (ModuleLayer.boot().findModule("jdk.incubator.vector").isEmpty())
            why = "the jdk.incubator.vector module is not loaded (start java with --add-modules jdk.incubator.vector)";
        else {
            List<String> args = ManagementFactory.getRuntimeMXBean().getInputArguments();
            for (String a : args)
                if (a.equals("-Xint") || a.startsWith("-XX:TieredStopAtLevel=") && !a.endsWith("=4") || a.equals("-XX:-UseCompiler"))
                    why = "the JIT cannot intrinsify vector code with " + a;
            if (why == null && VectorWidth.bits() < 256)
                why = "the preferred vector size is only " + VectorWidth.bits() + " bits";
        }
        if (why != null)
            System.err.println("vlm4j: WARNING: Vector API kernels disabled (" + why + "); using scalar CPU kernels, which are much slower");
        return why == null;
    }

    /** Isolated so the vector classes are only touched once the module is known to be there. */
    private static final class VectorWidth {
        static int bits() { return jdk.incubator.vector.FloatVector.SPECIES_PREFERRED.vectorBitSize(); }
    }
}
