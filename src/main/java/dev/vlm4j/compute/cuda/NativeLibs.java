package dev.vlm4j.compute.cuda;

import java.lang.foreign.Arena;
import java.lang.foreign.FunctionDescriptor;
import java.lang.foreign.Linker;
import java.lang.foreign.SymbolLookup;
import java.lang.invoke.MethodHandle;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Finds and opens the NVIDIA shared libraries. An environment variable (VLM4J_CUDA_LIB, VLM4J_CUBLASLT_LIB,
 * VLM4J_NVRTC_LIB) names a file to use; otherwise the usual folders are searched (the system library folders,
 * {@code /usr/local/cuda*}, {@code /usr/local/nvidia}, the {@code nvidia-*} Python wheels of PyTorch), and finally
 * the plain soname through the dynamic loader.
 */
final class NativeLibs {
    private NativeLibs() {}

    static final Linker LINKER = Linker.nativeLinker();

    /** Folders searched, in order, for the libraries. */
    static List<Path> searchDirs() {
        List<Path> dirs = new ArrayList<>();
        for (String d : List.of("/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/nvidia/lib64",
                "/usr/local/nvidia/lib", "/usr/local/cuda/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"))
            dirs.add(Path.of(d));
        glob(dirs, Path.of("/usr/local"), "cuda-*", "targets/x86_64-linux/lib");
        glob(dirs, Path.of("/usr/local"), "cuda-*", "lib64");
        String ld = System.getenv("LD_LIBRARY_PATH");
        if (ld != null) for (String p : ld.split(":")) if (!p.isBlank()) dirs.add(Path.of(p));
        // pip wheels (nvidia-cublas, nvidia-cuda-nvrtc) as installed next to PyTorch
        for (Path venv : List.of(Path.of("/opt/torch/.venv/lib"), Path.of("/usr/local/lib"), Path.of("/usr/lib"))) {
            if (!Files.isDirectory(venv)) continue;
            try (DirectoryStream<Path> py = Files.newDirectoryStream(venv, "python3*")) {
                for (Path p : py) {
                    for (String sp : List.of("site-packages/nvidia", "dist-packages/nvidia")) {
                        Path nv = p.resolve(sp);
                        if (!Files.isDirectory(nv)) continue;
                        try (DirectoryStream<Path> pk = Files.newDirectoryStream(nv)) {
                            for (Path k : pk) dirs.add(k.resolve("lib"));
                        }
                    }
                }
            } catch (Exception ignored) {
                // an unreadable folder is simply not searched
            }
        }
        return dirs;
    }

    private static void glob(List<Path> out, Path parent, String pattern, String sub) {
        if (!Files.isDirectory(parent)) return;
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(parent, pattern)) {
            List<Path> found = new ArrayList<>();
            for (Path p : ds) found.add(p.resolve(sub));
            found.sort(java.util.Comparator.reverseOrder());   // newest version first
            out.addAll(found);
        } catch (Exception ignored) {
            // not searched
        }
    }

    /**
     * Opens the first of {@code names} found; {@code envVar} overrides. Throws {@link IllegalStateException} with
     * every place tried when none opens.
     */
    static SymbolLookup open(String envVar, List<String> names, Arena arena) {
        String override = System.getenv(envVar);
        if (override != null && !override.isBlank()) {
            try {
                return SymbolLookup.libraryLookup(Path.of(override), arena);
            } catch (IllegalArgumentException e) {
                throw new IllegalStateException(envVar + "=" + override + " could not be opened: " + e.getMessage());
            }
        }
        List<String> tried = new ArrayList<>();
        for (String name : names) {
            for (Path dir : searchDirs()) {
                Path f = dir.resolve(name);
                if (!Files.exists(f)) continue;
                try {
                    return SymbolLookup.libraryLookup(f, arena);
                } catch (IllegalArgumentException e) {
                    tried.add(f + " (" + e.getMessage() + ")");
                }
            }
        }
        for (String name : names) {
            try {
                return SymbolLookup.libraryLookup(name, arena);
            } catch (IllegalArgumentException e) {
                tried.add(name);
            }
        }
        throw new IllegalStateException(names.getFirst() + " not found (set " + envVar + " to its path); tried " + tried);
    }

    static MethodHandle fn(SymbolLookup lib, String name, FunctionDescriptor fd) {
        return LINKER.downcallHandle(lib.find(name).orElseThrow(
                () -> new IllegalStateException("symbol " + name + " missing from the library")), fd);
    }
}
