package dev.vlm4j.tensor;

/** Element types, with the spellings used in safetensors headers. */
public enum DType {
    F32("F32", 4), F16("F16", 2), BF16("BF16", 2), F64("F64", 8),
    I64("I64", 8), I32("I32", 4), I16("I16", 2), I8("I8", 1), U8("U8", 1), BOOL("BOOL", 1),
    /** 8-bit blocks of 32 values with an f16 scale (like GGML Q8_0); in-memory only, see {@link Quant}. */
    Q8_0("Q8_0", 0),
    /** 4-bit blocks of 32 values with an f16 scale (like GGML Q4_0); in-memory only, see {@link Quant}. */
    Q4_0("Q4_0", 0);

    public final String safetensorsName;
    public final int bytes;

    DType(String name, int bytes) {
        this.safetensorsName = name;
        this.bytes = bytes;
    }

    public boolean isFloat() {
        return this == F32 || this == F16 || this == BF16 || this == F64;
    }

    /** Block-quantized (no fixed bytes per element; the layout is {@link Quant}'s). */
    public boolean isQuantized() { return this == Q8_0 || this == Q4_0; }

    /** Parses a safetensors dtype name; returns null when unknown. */
    public static DType fromSafetensors(String name) {
        for (DType d : values()) if (!d.isQuantized() && d.safetensorsName.equals(name)) return d;
        return null;
    }
}
