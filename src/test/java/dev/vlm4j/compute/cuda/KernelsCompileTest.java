package dev.vlm4j.compute.cuda;

import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The CUDA kernels compile with nvcc to PTX (compute_80), no GPU needed. Skipped with a message where nvcc is not
 * on the PATH. Also checks that every kernel CudaBackend looks up is an entry point of the PTX.
 */
class KernelsCompileTest {
    static String nvcc() {
        String env = System.getenv("NVCC");
        if (env != null && new File(env).canExecute()) return env;
        for (String dir : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            File f = new File(dir, "nvcc");
            if (f.canExecute()) return f.getPath();
        }
        return null;
    }

    @Test
    void kernelsCompileWithNvcc() throws Exception { compiles(Kernels.SOURCE, Kernels.NAMES); }

    @Test
    void trainingKernelsCompileWithNvcc() throws Exception { compiles(Kernels.TRAIN_SOURCE, Kernels.TRAIN_NAMES); }

    @Test
    void flashAttentionKernelsCompileWithNvcc() throws Exception { compiles(Kernels.FLASH_SOURCE, FlashAttention.names()); }

    @Test
    void secondFlashAttentionKernelsCompileWithNvcc() throws Exception { compiles(Kernels.FLASH2_SOURCE, FlashAttention.names2()); }

    private static void compiles(String source, java.util.List<String> names) throws Exception {
        String nvcc = nvcc();
        Assumptions.assumeTrue(nvcc != null, "nvcc not on the PATH: kernel compilation not checked");
        byte[] src = Kernels.resource(source);
        assertNotNull(src, source + " on the class path");
        Path dir = Files.createTempDirectory("vlm4j-ptx");
        Path cu = dir.resolve("kernels.cu"), ptx = dir.resolve("kernels.ptx");
        Files.write(cu, src);
        Process p = new ProcessBuilder(nvcc, "-arch=compute_80", "-ptx", "-o", ptx.toString(), cu.toString())
                .redirectErrorStream(true).start();
        String log = new String(p.getInputStream().readAllBytes());
        assertTrue(p.waitFor(120, TimeUnit.SECONDS), "nvcc timed out");
        assertEquals(0, p.exitValue(), "nvcc failed on " + source + ":\n" + log);
        String text = Files.readString(ptx);
        for (String k : names) assertTrue(text.contains(".entry " + k + "("), source + ": PTX has no entry " + k);
    }
}
