package dev.vlm4j.serve;

import dev.vlm4j.Fixtures;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Starts the server on 127.0.0.1 and drives it with the official {@code openai} npm package
 * (src/test/node/openai-client.test.mjs; installed with {@code npm ci} into target/node-client from the lock file).
 * Skipped, with a message, when node or npm is missing.
 */
class OpenAiNodeClientTest {
    static final String KEY = "node-test-key";

    @Test
    void officialClientDrivesTheServer(@TempDir Path tmp) throws Exception {
        Assumptions.assumeTrue(onPath("node") && onPath("npm"), "node and npm are needed for the openai npm client test (not on PATH)");
        Path work = Path.of("target", "node-client").toAbsolutePath();
        Files.createDirectories(work);
        for (String f : List.of("package.json", "package-lock.json", "openai-client.test.mjs"))
            Files.copy(Path.of("src/test/node", f), work.resolve(f), StandardCopyOption.REPLACE_EXISTING);
        if (!Files.isDirectory(work.resolve("node_modules/openai"))) {
            Result r = run(work, List.of("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"), 300);
            assertEquals(0, r.code, "npm ci failed:\n" + r.output);
        }
        Path model = TestServer.thinkingModel(tmp);
        try (OpenAiServer server = TestServer.start(model, ServeConfig.defaults().withApiKey(KEY), true)) {
            ProcessBuilder pb = new ProcessBuilder("node", "openai-client.test.mjs");
            pb.environment().put("BASE_URL", "http://127.0.0.1:" + server.port() + "/v1");
            pb.environment().put("API_KEY", KEY);
            pb.environment().put("IMAGE", Fixtures.dir().resolve("image_processor/img1_640x480.png").toString());
            Result r = run(work, pb, 300);
            System.out.println(r.output);
            assertEquals(0, r.code, "the openai client script failed:\n" + r.output);
            assertTrue(r.output.contains("ALL OK"), r.output);
        }
    }

    record Result(int code, String output) {}

    static Result run(Path dir, List<String> cmd, int seconds) throws Exception {
        return run(dir, new ProcessBuilder(cmd), seconds);
    }

    static Result run(Path dir, ProcessBuilder pb, int seconds) throws Exception {
        Path log = Files.createTempFile("vlm4j-node", ".log");
        Process p = pb.directory(dir.toFile()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        boolean done = p.waitFor(seconds, TimeUnit.SECONDS);
        if (!done) p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
        String out = Files.readString(log, StandardCharsets.UTF_8);
        Files.deleteIfExists(log);
        return new Result(done ? p.exitValue() : -1, done ? out : out + "\n(timed out after " + seconds + " s)");
    }

    static boolean onPath(String exe) {
        String path = System.getenv("PATH");
        if (path == null) return false;
        for (String d : path.split(File.pathSeparator)) if (Files.isExecutable(Path.of(d, exe))) return true;
        return false;
    }
}
