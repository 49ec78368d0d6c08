package dev.vlm4j.compute.cpu;

import java.util.Locale;

/** How the CPU backend keeps 2-D weights: as stored in the checkpoint (bf16 / f32), or block-quantized at load. */
public enum QuantMode {
    /** Weights stay as stored (bf16 or f32, memory-mapped, no copy). */
    NONE,
    /** 8-bit blocks of 32 with an f16 scale (about 8.5 bits a weight). */
    Q8_0,
    /** 4-bit blocks of 32 with an f16 scale (about 4.5 bits a weight). */
    Q4_0;

    /** Parses {@code bf16}, {@code f32}, {@code none} (all: as stored), {@code q8_0}, {@code q4_0}. */
    public static QuantMode parse(String s) {
        if (s == null) return NONE;
        return switch (s.trim().toLowerCase(Locale.ROOT)) {
            case "", "none", "bf16", "f32", "as-stored" -> NONE;
            case "q8_0", "q8" -> Q8_0;
            case "q4_0", "q4" -> Q4_0;
            default -> throw new IllegalArgumentException("unknown --quant '" + s + "' (use bf16, q8_0 or q4_0)");
        };
    }
}
