package dev.vlm4j.compute.cpu;

import java.util.function.Supplier;

/** Manual probe: Q8GemvBench's variants interleaved in rounds, best time of each (robust to other load). */
public final class Q8GemvRace {
    public static void main(String[] a) throws Exception {
        Q8GemvBench b = new Q8GemvBench();
        b.out = Integer.getInteger("out", 512);
        b.setup();
        String[] names = a.length > 0 ? a[0].split(",") : new String[]{"current", "bf16Row", "rows4", "rows2", "load256", "intPath", "unroll2", "rows4s"};
        Supplier<?>[] f = new Supplier<?>[names.length];
        for (int i = 0; i < names.length; i++) {
            var m = Q8GemvBench.class.getMethod(names[i]);
            f[i] = () -> { try { return m.invoke(b); } catch (Exception e) { throw new RuntimeException(e); } };
        }
        double[] best = new double[names.length];
        java.util.Arrays.fill(best, 1e9);
        int rounds = a.length > 1 ? Integer.parseInt(a[1]) : 40;
        for (int r = 0; r < rounds; r++)
            for (int i = 0; i < names.length; i++) {
                for (int k = 0; k < 5; k++) {
                    long t0 = System.nanoTime();
                    f[i].get();
                    best[i] = Math.min(best[i], (System.nanoTime() - t0) / 1e6);
                }
            }
        for (int i = 0; i < names.length; i++) System.out.printf("%-10s %.3f ms%n", names[i], best[i]);
    }
}
