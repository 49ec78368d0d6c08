package dev.vlm4j.tensor;

/** Element types, with the spellings used in safetensors headers. */
public enum DType {
    F32("F32", 4), F16("F16", 2), BF16("BF16", 2), F64("F64", 8),
    I64("I64", 8), I32("I32", 4), I16("I16", 2), I8("I8", 1), U8("U8", 1), BOOL("BOOL", 1);

    public final String safetensorsName;
    public final int bytes;

    DType(String name, int bytes) {
        this.safetensorsName = name;
        this.bytes = bytes;
    }

    public boolean isFloat() {
        return this == F32 || this == F16 || this == BF16 || this == F64;
    }

    /** Parses a safetensors dtype name; returns null when unknown. */
    public static DType fromSafetensors(String name) {
        for (DType d : values()) if (d.safetensorsName.equals(name)) return d;
        return null;
    }
}
