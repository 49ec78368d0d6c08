package dev.vlm4j;

import org.junit.jupiter.api.Assumptions;

import java.nio.file.Files;
import java.nio.file.Path;

/**
 * Locates the reference fixtures (../shared/fixtures by default; override with -Dvlm4j.fixtures=DIR or the
 * VLM4J_FIXTURES environment variable). Tests that need them call {@link #dir()}, which skips the test with a
 * message when they are absent.
 */
public final class Fixtures {
    private Fixtures() {}

    public static Path root() {
        String p = System.getProperty("vlm4j.fixtures");
        if (p == null || p.isBlank()) p = System.getenv("VLM4J_FIXTURES");
        if (p == null || p.isBlank()) p = "../shared/fixtures";
        return Path.of(p).toAbsolutePath().normalize();
    }

    /** The fixtures folder, or the calling test is skipped (with a message) when it does not exist. */
    public static Path dir() {
        Path r = root();
        Assumptions.assumeTrue(Files.isDirectory(r), "fixtures not found at " + r + " (set -Dvlm4j.fixtures=DIR)");
        return r;
    }

    public static Path tinyModel() { return dir().resolve("tiny-qwen2_5-vl"); }

    public static Path cases() { return dir().resolve("cases"); }
}
