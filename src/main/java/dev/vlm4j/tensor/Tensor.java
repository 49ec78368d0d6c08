package dev.vlm4j.tensor;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * An n-dimensional, row-major, contiguous array: a dtype, a shape and the memory holding it.
 * <p>
 * On the CPU the memory is a heap segment (activations, {@code float[]}-backed) or a memory-mapped file slice
 * (weights, any dtype). Other backends hold device memory behind the same type; host code reads elements only
 * through {@link #toFloatArray()} and the element getters, which work on host memory.
 */
public final class Tensor {
    static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfLong I64_LE = ValueLayout.JAVA_LONG_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    static final ValueLayout.OfInt I32_LE = ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    private final DType dtype;
    private final long[] shape;
    private final MemorySegment data;
    private final Device device;

    public Tensor(DType dtype, long[] shape, MemorySegment data, Device device) {
        this.dtype = dtype;
        this.shape = shape.clone();
        this.data = data;
        this.device = device;
        long need = dtype.isQuantized() ? Quant.storageBytes(dtype, shape) : numel(shape) * dtype.bytes;
        if (data.byteSize() < need)
            throw new IllegalArgumentException("tensor of shape " + Arrays.toString(shape) + " " + dtype
                    + " needs " + need + " bytes, memory has " + data.byteSize());
    }

    /** A float32 tensor over a Java array (no copy). */
    public static Tensor of(float[] values, long... shape) {
        if (numel(shape) != values.length)
            throw new IllegalArgumentException("shape " + Arrays.toString(shape) + " does not hold " + values.length + " values");
        return new Tensor(DType.F32, shape, MemorySegment.ofArray(values), Device.CPU);
    }

    /** A zero-filled float32 tensor on the CPU heap. */
    public static Tensor zeros(long... shape) {
        return of(new float[Math.toIntExact(numel(shape))], shape);
    }

    public static Tensor ofLongs(long[] values, long... shape) {
        return new Tensor(DType.I64, shape, MemorySegment.ofArray(values), Device.CPU);
    }

    public static long numel(long[] shape) {
        long n = 1;
        for (long s : shape) n *= s;
        return n;
    }

    public DType dtype() { return dtype; }
    public long[] shape() { return shape.clone(); }
    public int rank() { return shape.length; }
    public long dim(int i) { return shape[i < 0 ? shape.length + i : i]; }
    public long numel() { return numel(shape); }
    public MemorySegment data() { return data; }
    public Device device() { return device; }

    /** The backing {@code float[]} of a heap float32 tensor, or null when it is not one. */
    public float[] heapFloats() {
        if (dtype != DType.F32) return null;
        Object base = data.heapBase().orElse(null);
        return base instanceof float[] f && data.address() == 0 && f.length == numel() ? f : null;
    }

    /** Same memory, another shape with the same element count. */
    public Tensor reshape(long... newShape) {
        if (numel(newShape) != numel())
            throw new IllegalArgumentException("cannot reshape " + Arrays.toString(shape) + " to " + Arrays.toString(newShape));
        return new Tensor(dtype, newShape, data, device);
    }

    /** Element i (flat index) as a float, whatever the dtype. Host memory only. */
    public float getFloat(long i) {
        return switch (dtype) {
            case F32 -> data.getAtIndex(F32_LE, i);
            case BF16 -> Float.intBitsToFloat((data.getAtIndex(I16_LE, i) & 0xffff) << 16);
            case F16 -> Float.float16ToFloat(data.getAtIndex(I16_LE, i));
            case F64 -> (float) data.getAtIndex(ValueLayout.JAVA_DOUBLE_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), i);
            case I64 -> data.getAtIndex(I64_LE, i);
            case I32 -> data.getAtIndex(I32_LE, i);
            case I16 -> data.getAtIndex(I16_LE, i);
            case I8 -> data.get(ValueLayout.JAVA_BYTE, i);
            case U8, BOOL -> data.get(ValueLayout.JAVA_BYTE, i) & 0xff;
            case Q8_0, Q4_0 -> Quant.get(this, i);
        };
    }

    /** Element i (flat index) as a long (integer dtypes; floats are truncated). Host memory only. */
    public long getLong(long i) {
        return switch (dtype) {
            case I64 -> data.getAtIndex(I64_LE, i);
            case I32 -> data.getAtIndex(I32_LE, i);
            default -> (long) getFloat(i);
        };
    }

    /** All elements converted to float32 (a copy). */
    public float[] toFloatArray() {
        int n = Math.toIntExact(numel());
        float[] out = new float[n];
        if (dtype == DType.F32) {
            MemorySegment.copy(data, F32_LE, 0, out, 0, n);
        } else if (dtype == DType.BF16) {
            for (int i = 0; i < n; i++) out[i] = Float.intBitsToFloat((data.getAtIndex(I16_LE, i) & 0xffff) << 16);
        } else {
            for (int i = 0; i < n; i++) out[i] = getFloat(i);
        }
        return out;
    }

    public long[] toLongArray() {
        int n = Math.toIntExact(numel());
        long[] out = new long[n];
        for (int i = 0; i < n; i++) out[i] = getLong(i);
        return out;
    }

    /** Row r of a 2-D (or higher, flattened to [dim0, rest]) tensor as float32. */
    public float[] row(long r) {
        long cols = numel() / shape[0];
        float[] out = new float[Math.toIntExact(cols)];
        for (int j = 0; j < cols; j++) out[j] = getFloat(r * cols + j);
        return out;
    }

    @Override
    public String toString() {
        return "Tensor" + Arrays.toString(shape) + " " + dtype + " on " + device;
    }
}
