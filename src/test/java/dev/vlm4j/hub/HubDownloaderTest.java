package dev.vlm4j.hub;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.OutputStream;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.*;
import java.util.concurrent.atomic.AtomicInteger;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link HubDownloader} against a local HTTP server (127.0.0.1) that mimics the Hugging Face and ModelScope URL
 * layouts: a download resumes after a cut connection, a checksum mismatch is rejected, a cached snapshot is reused
 * (and found offline).
 */
class HubDownloaderTest {
    static final String COMMIT = "0123456789abcdef0123456789abcdef01234567";
    HttpServer server;
    String base;
    @TempDir Path cache;
    final Map<String, byte[]> files = new LinkedHashMap<>();
    final Map<String, String> declaredSha = new HashMap<>();
    final AtomicInteger fileGets = new AtomicInteger(), rangeGets = new AtomicInteger();
    volatile boolean cutFirstTransfer = true;

    @BeforeEach
    void start() throws IOException {
        byte[] big = new byte[300_000];
        new Random(1).nextBytes(big);
        files.put("config.json", "{\"model_type\":\"qwen2_5_vl\"}".getBytes(StandardCharsets.UTF_8));
        files.put("model.safetensors", big);
        files.put("sub/tokenizer.json", "{}".getBytes(StandardCharsets.UTF_8));
        server = HttpServer.create(new InetSocketAddress("127.0.0.1", 0), 0);
        server.createContext("/", this::handle);
        server.start();
        base = "http://127.0.0.1:" + server.getAddress().getPort();
    }

    @AfterEach
    void stop() { server.stop(0); }

    private void handle(HttpExchange ex) throws IOException {
        String path = ex.getRequestURI().getRawPath();
        Map<String, String> q = query(ex.getRequestURI().getRawQuery());
        if (path.equals("/api/models/org/name/revision/main")) {
            StringBuilder sb = new StringBuilder("{\"sha\":\"" + COMMIT + "\",\"siblings\":[");
            int i = 0;
            for (var e : files.entrySet()) {
                if (i++ > 0) sb.append(',');
                String sha = declaredSha.getOrDefault(e.getKey(), sha(e.getValue(), "SHA-256", null));
                if (e.getKey().endsWith(".safetensors"))
                    sb.append("{\"rfilename\":\"").append(e.getKey()).append("\",\"size\":").append(e.getValue().length)
                            .append(",\"lfs\":{\"sha256\":\"").append(sha).append("\",\"size\":").append(e.getValue().length).append("}}");
                else
                    sb.append("{\"rfilename\":\"").append(e.getKey()).append("\",\"size\":").append(e.getValue().length)
                            .append(",\"blobId\":\"").append(sha(e.getValue(), "SHA-1", "blob " + e.getValue().length + "\0")).append("\"}");
            }
            send(ex, 200, sb.append("]}").toString().getBytes(StandardCharsets.UTF_8));
        } else if (path.startsWith("/org/name/resolve/" + COMMIT + "/")) {
            serveFile(ex, path.substring(("/org/name/resolve/" + COMMIT + "/").length()));
        } else if (path.equals("/api/v1/models/org/name/repo/files")) {
            assertEquals("master", q.get("Revision"));
            StringBuilder sb = new StringBuilder("{\"Code\":200,\"Data\":{\"Files\":[");
            int i = 0;
            for (var e : files.entrySet()) {
                if (i++ > 0) sb.append(',');
                sb.append("{\"Path\":\"").append(e.getKey()).append("\",\"Type\":\"blob\",\"Size\":").append(e.getValue().length)
                        .append(",\"Sha256\":\"").append(declaredSha.getOrDefault(e.getKey(), sha(e.getValue(), "SHA-256", null))).append("\"}");
            }
            send(ex, 200, sb.append("]}}").toString().getBytes(StandardCharsets.UTF_8));
        } else if (path.equals("/api/v1/models/org/name/repo")) {
            serveFile(ex, q.get("FilePath"));
        } else {
            send(ex, 404, "{}".getBytes(StandardCharsets.UTF_8));
        }
    }

    private void serveFile(HttpExchange ex, String name) throws IOException {
        byte[] b = files.get(name);
        if (b == null) { send(ex, 404, new byte[0]); return; }
        fileGets.incrementAndGet();
        String range = ex.getRequestHeaders().getFirst("Range");
        int from = 0;
        if (range != null) {
            rangeGets.incrementAndGet();
            from = Integer.parseInt(range.replace("bytes=", "").replace("-", ""));
            ex.getResponseHeaders().add("Content-Range", "bytes " + from + "-" + (b.length - 1) + "/" + b.length);
        }
        byte[] body = Arrays.copyOfRange(b, from, b.length);
        if (cutFirstTransfer && b.length > 100_000 && range == null) {
            cutFirstTransfer = false;
            ex.sendResponseHeaders(200, body.length);
            OutputStream os = ex.getResponseBody();
            os.write(body, 0, body.length / 3);
            os.flush();
            ex.getHttpContext().getServer(); // the connection is cut here: close without the rest
            ex.close();
            return;
        }
        send(ex, range != null ? 206 : 200, body);
    }

    private static void send(HttpExchange ex, int status, byte[] body) throws IOException {
        ex.sendResponseHeaders(status, body.length == 0 ? -1 : body.length);
        try (OutputStream os = ex.getResponseBody()) { os.write(body); }
    }

    private static Map<String, String> query(String raw) {
        Map<String, String> m = new HashMap<>();
        if (raw == null) return m;
        for (String kv : raw.split("&")) {
            int i = kv.indexOf('=');
            m.put(URLDecoder.decode(kv.substring(0, i), StandardCharsets.UTF_8), URLDecoder.decode(kv.substring(i + 1), StandardCharsets.UTF_8));
        }
        return m;
    }

    private static String sha(byte[] b, String alg, String prefix) {
        try {
            MessageDigest md = MessageDigest.getInstance(alg);
            if (prefix != null) md.update(prefix.getBytes(StandardCharsets.UTF_8));
            return HexFormat.of().formatHex(md.digest(b));
        } catch (Exception e) {
            throw new IllegalStateException(e);
        }
    }

    private HubSettings settings(HubSettings.Source source) {
        return new HubSettings(source, base, "tok", cache, false, false);
    }

    @Test
    void huggingFaceLayoutResumesAfterACutConnectionAndIsReusedOffline() throws Exception {
        HubDownloader d = new HubDownloader(settings(HubSettings.Source.HUGGINGFACE));
        Path snap = d.download("org/name", null, List.of());
        assertEquals(cache.resolve("models--org--name/snapshots/" + COMMIT), snap);
        for (var e : files.entrySet()) assertArrayEquals(e.getValue(), Files.readAllBytes(snap.resolve(e.getKey())), e.getKey());
        assertTrue(Files.isSymbolicLink(snap.resolve("model.safetensors")), "snapshot files link into blobs/ as in the HF cache");
        assertEquals(1, rangeGets.get(), "the cut transfer resumed with a range request");
        assertEquals(COMMIT, Files.readString(cache.resolve("models--org--name/refs/main")));
        try (var s = Files.list(cache.resolve("models--org--name/blobs"))) {
            assertTrue(s.noneMatch(p -> p.toString().endsWith(".incomplete")));
        }
        // Cached: a second download fetches no file; offline mode finds the snapshot without the server.
        int gets = fileGets.get();
        assertEquals(snap, d.download("org/name", "main", List.of()));
        assertEquals(gets, fileGets.get());
        server.stop(0);
        HubDownloader offline = new HubDownloader(settings(HubSettings.Source.HUGGINGFACE).withOffline(true));
        assertEquals(snap, offline.download("org/name", null, List.of()));
        assertThrows(IllegalStateException.class, () -> offline.download("org/other", null, List.of()));
    }

    @Test
    void checksumMismatchIsRejected() {
        declaredSha.put("model.safetensors", "0".repeat(64));
        cutFirstTransfer = false;
        HubDownloader d = new HubDownloader(settings(HubSettings.Source.HUGGINGFACE));
        Exception e = assertThrows(RuntimeException.class, () -> d.download("org/name", null, List.of()));
        assertTrue(e.getMessage().contains("checksum mismatch"), e.getMessage());
        assertFalse(Files.exists(cache.resolve("models--org--name/blobs/" + "0".repeat(64))));
        assertFalse(Files.exists(cache.resolve("models--org--name/blobs/" + "0".repeat(64) + ".incomplete")));
    }

    @Test
    void modelScopeLayoutWithIncludeGlobs() throws Exception {
        HubDownloader d = new HubDownloader(settings(HubSettings.Source.MODELSCOPE));
        Path snap = d.download("org/name", null, List.of("*.json"));
        assertEquals(cache.resolve("models--org--name/snapshots/master"), snap);
        assertArrayEquals(files.get("config.json"), Files.readAllBytes(snap.resolve("config.json")));
        assertArrayEquals(files.get("sub/tokenizer.json"), Files.readAllBytes(snap.resolve("sub/tokenizer.json")));
        assertFalse(Files.exists(snap.resolve("model.safetensors")), "--include filters files");
    }

    @Test
    void environmentSettings() {
        HubSettings hf = HubSettings.fromEnvironment(HubSettings.Source.HUGGINGFACE,
                Map.of("HF_ENDPOINT", "http://127.0.0.1:9/", "HF_TOKEN", "t", "HF_HOME", "/tmp/hfhome", "HF_HUB_OFFLINE", "1"));
        assertEquals("http://127.0.0.1:9", hf.endpoint());
        assertEquals(Path.of("/tmp/hfhome/hub"), hf.cacheRoot());
        assertTrue(hf.offline());
        HubSettings ms = HubSettings.fromEnvironment(HubSettings.Source.MODELSCOPE, Map.of("MODELSCOPE_DOMAIN", "ms.example", "MODELSCOPE_API_TOKEN", "k"));
        assertEquals("https://ms.example", ms.endpoint());
        assertEquals("k", ms.token());
        assertThrows(IllegalArgumentException.class, () -> new HubDownloader(hf).repoFolder("../evil"));
    }
}
