package dev.vlm4j.cli;

import org.junit.jupiter.api.Test;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;

import static org.junit.jupiter.api.Assertions.*;

/** {@code vlm4j serve} and {@code vlm4j download} are registered and fail cleanly on bad input. */
class ServeDownloadCommandTest {
    @Test
    void helpAndErrors() {
        PrintStream out = System.out, err = System.err;
        ByteArrayOutputStream buf = new ByteArrayOutputStream();
        try {
            System.setOut(new PrintStream(buf, true));
            System.setErr(new PrintStream(buf, true));
            assertEquals(0, Main.run("serve", "--help"));
            assertEquals(0, Main.run("download", "--help"));
            assertNotEquals(0, Main.run("download", "../evil", "--offline", "--quiet"));
            assertNotEquals(0, Main.run("serve", "--model", "no/such-model-here-xyz", "--port", "0"), "offline hub id not cached");
        } finally {
            System.setOut(out);
            System.setErr(err);
        }
        String s = buf.toString();
        assertTrue(s.contains("--allow-remote-media") && s.contains("--api-key") && s.contains("--revision"), s);
        assertTrue(s.contains("invalid repository id"), s);
    }
}
