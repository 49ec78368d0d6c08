package dev.vlm4j.compute.cuda;

import java.io.IOException;
import java.io.InputStream;
import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;

import static java.lang.foreign.ValueLayout.ADDRESS;
import static java.lang.foreign.ValueLayout.JAVA_BYTE;
import static java.lang.foreign.ValueLayout.JAVA_INT;
import static java.lang.foreign.ValueLayout.JAVA_LONG;

/**
 * The PTX of {@code kernels.cu}. The source is compiled at first use with NVRTC (libnvrtc.so.13/.12, or
 * VLM4J_NVRTC_LIB) for the device's own architecture, and the PTX cached under {@code ~/.cache/vlm4j/ptx} keyed by
 * the hash of the source and the architecture. A prebuilt {@code kernels.ptx} next to the source on the class path
 * (made by {@code scripts/build-ptx.sh}, compute_80) is used instead when present, unless VLM4J_FORCE_NVRTC is set.
 */
final class Kernels {
    private Kernels() {}

    static final String SOURCE = "/dev/vlm4j/compute/cuda/kernels.cu", PTX = "/dev/vlm4j/compute/cuda/kernels.ptx";
    /** The training kernels (backward ops, optimizer, dropout, cross-entropy, product attention), a module of their own. */
    static final String TRAIN_SOURCE = "/dev/vlm4j/compute/cuda/train_kernels.cu",
            TRAIN_PTX = "/dev/vlm4j/compute/cuda/train_kernels.ptx";
    /** Attention on the tensor cores without materialised scores (FlashAttention), a module of its own. */
    static final String FLASH_SOURCE = "/dev/vlm4j/compute/cuda/flash_kernels.cu",
            FLASH_PTX = "/dev/vlm4j/compute/cuda/flash_kernels.ptx";
    /** The second flash attention kernels (larger tiles; FlashAttention.V2_HEAD_SIZES), a module of their own. */
    static final String FLASH2_SOURCE = "/dev/vlm4j/compute/cuda/flash2_kernels.cu",
            FLASH2_PTX = "/dev/vlm4j/compute/cuda/flash2_kernels.ptx";

    /** The entry points of {@link #TRAIN_SOURCE}. */
    static final List<String> TRAIN_NAMES = List.of("axpy_f32", "add_product_f32", "silu_mul_backward", "silu_mul_backward_bf16", "silu_mul_backward_bf16_x4", "rotary_backward2", "rms_norm_backward_bf16",
            "gelu_backward", "add_rows_f32", "add_columns_f32", "rotary_backward", "rms_norm_backward", "column_sums_f32",
            "dropout_f32", "cross_entropy_forward", "cross_entropy_backward", "expand_heads",
            "masked_softmax", "softmax_backward_rows", "reduce_heads_add", "scale_copy_f32", "mul_f32", "add_dropout_f32",
            "lora_down_stream", "lora_down_stream8", "lora_down_da4_bf16", "lora_down_da4_swiglu", "sum_parts_t_f32", "lora_down_dx4", "sum_parts_f32", "lora_down_da_part2", "lora_down_da_part2_bf16", "lora_down_dx", "adamw_multi_f32", "scale_multi_f32", "zero_multi_f32",
            "sum_squares_multi_f32");

    /** The kernel entry points CudaBackend uses. */
    static final List<String> NAMES = List.of("f32_to_bf16_kernel", "f32_to_bf16_x8", "bf16_to_f32_kernel", "rms_norm", "add_f32",
            "bias_add", "silu_mul", "gelu_erf", "embedding_f32", "embedding_bf16", "gather_rows", "scatter_rows",
            "columns_f32", "rotary_f32", "attention_f32", "attention_split", "attention_combine", "gemv_bf16", "gemv_f32",
            "append_rows", "attention_batch", "argmax_rows", "attention_flash", "gemv_bf16_sx", "gemv_bf16_fused", "rms_norm_v4", "softmax_rows_bf16", "rms_norm_v4_bf16", "silu_mul_bf16", "silu_mul_bf16_x4", "rotary_f32_bf16");

    static byte[] resource(String name) {
        try (InputStream in = Kernels.class.getResourceAsStream(name)) {
            return in == null ? null : in.readAllBytes();
        } catch (IOException e) {
            return null;
        }
    }

    /** Null when the kernels can be had (prebuilt PTX or NVRTC), else why not. */
    static String unavailableReason() {
        if (resource(PTX) != null && System.getenv("VLM4J_FORCE_NVRTC") == null) return null;
        try {
            nvrtc();
            return null;
        } catch (RuntimeException e) {
            return "no prebuilt kernels.ptx (nvcc was not found at build time) and NVRTC is unavailable: " + e.getMessage();
        }
    }

    /** PTX for a device of compute capability {@code cc} (e.g. 90). */
    static byte[] ptx(int cc) { return ptx(cc, SOURCE, PTX); }

    /** PTX of one kernel source (a prebuilt one when present) for compute capability {@code cc}. */
    static byte[] ptx(int cc, String source, String prebuilt) {
        byte[] built = System.getenv("VLM4J_FORCE_NVRTC") == null ? resource(prebuilt) : null;
        if (built != null) return built;
        byte[] src = resource(source);
        if (src == null) throw new IllegalStateException(source + " missing from the class path");
        String arch = "compute_" + cc;
        String key;
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(src);
            md.update(arch.getBytes(StandardCharsets.UTF_8));
            key = HexFormat.of().formatHex(md.digest()).substring(0, 32);
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
        Path cache = Path.of(System.getProperty("user.home"), ".cache", "vlm4j", "ptx", key + ".ptx");
        try {
            if (Files.isRegularFile(cache)) return Files.readAllBytes(cache);
        } catch (IOException ignored) {
            // recompile
        }
        byte[] ptx = nvrtc().compile(new String(src, StandardCharsets.UTF_8), source.substring(source.lastIndexOf('/') + 1), arch);
        try {
            Files.createDirectories(cache.getParent());
            Path tmp = Files.createTempFile(cache.getParent(), key, ".tmp");
            Files.write(tmp, ptx);
            Files.move(tmp, cache, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        } catch (IOException ignored) {
            // an unwritable cache only costs a recompile next time
        }
        return ptx;
    }

    private static volatile Nvrtc nvrtc;

    static Nvrtc nvrtc() {
        if (nvrtc == null) {
            synchronized (Kernels.class) {
                if (nvrtc == null) nvrtc = new Nvrtc();
            }
        }
        return nvrtc;
    }

    /** Bindings for the handful of NVRTC calls that turn CUDA C into PTX. */
    static final class Nvrtc {
        private final MethodHandle create, compile, ptxSize, getPtx, logSize, getLog, destroy;

        Nvrtc() {
            SymbolLookup lib = NativeLibs.open("VLM4J_NVRTC_LIB", List.of("libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"), Arena.global());
            create = NativeLibs.fn(lib, "nvrtcCreateProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS, ADDRESS, JAVA_INT, ADDRESS, ADDRESS));
            compile = NativeLibs.fn(lib, "nvrtcCompileProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS, JAVA_INT, ADDRESS));
            ptxSize = NativeLibs.fn(lib, "nvrtcGetPTXSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            getPtx = NativeLibs.fn(lib, "nvrtcGetPTX", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            logSize = NativeLibs.fn(lib, "nvrtcGetProgramLogSize", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            getLog = NativeLibs.fn(lib, "nvrtcGetProgramLog", FunctionDescriptor.of(JAVA_INT, ADDRESS, ADDRESS));
            destroy = NativeLibs.fn(lib, "nvrtcDestroyProgram", FunctionDescriptor.of(JAVA_INT, ADDRESS));
        }

        byte[] compile(String source, String name, String arch) {
            try (Arena a = Arena.ofConfined()) {
                MemorySegment progP = a.allocate(ADDRESS);
                check((int) create.invokeExact(progP, a.allocateFrom(source), a.allocateFrom(name), 0,
                        MemorySegment.NULL, MemorySegment.NULL), "nvrtcCreateProgram");
                MemorySegment prog = progP.get(ADDRESS, 0);
                try {
                    List<String> opts = List.of("--gpu-architecture=" + arch, "-default-device", "-std=c++17");
                    MemorySegment arr = a.allocate(ADDRESS, opts.size());
                    for (int i = 0; i < opts.size(); i++) arr.setAtIndex(ADDRESS, i, a.allocateFrom(opts.get(i)));
                    int rc = (int) compile.invokeExact(prog, opts.size(), arr);
                    if (rc != 0) {
                        MemorySegment n = a.allocate(JAVA_LONG);
                        int r1 = (int) logSize.invokeExact(prog, n);
                        MemorySegment log = a.allocate(Math.max(1, n.get(JAVA_LONG, 0)));
                        int r2 = (int) getLog.invokeExact(prog, log);
                        throw new CudaException("NVRTC could not compile " + name + " (" + rc + "):\n" + log.getString(0), rc);
                    }
                    MemorySegment n = a.allocate(JAVA_LONG);
                    check((int) ptxSize.invokeExact(prog, n), "nvrtcGetPTXSize");
                    MemorySegment out = a.allocate(n.get(JAVA_LONG, 0));
                    check((int) getPtx.invokeExact(prog, out), "nvrtcGetPTX");
                    byte[] ptx = out.toArray(JAVA_BYTE);
                    int len = ptx.length;
                    while (len > 0 && ptx[len - 1] == 0) len--;
                    return java.util.Arrays.copyOf(ptx, len);
                } finally {
                    int r = (int) destroy.invokeExact(progP);
                }
            } catch (Throwable t) {
                throw CudaDriver.rethrow(t);
            }
        }

        private static void check(int rc, String what) {
            if (rc != 0) throw new CudaException(what + " failed: NVRTC status " + rc, rc);
        }
    }
}
