package dev.vlm4j.hub;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.UncheckedIOException;
import java.net.URI;
import java.net.URLEncoder;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.charset.StandardCharsets;
import java.nio.file.*;
import java.security.MessageDigest;
import java.security.NoSuchAlgorithmException;
import java.time.Duration;
import java.util.*;

/**
 * Downloads a model repository from Hugging Face or ModelScope into the Hugging Face cache layout
 * ({@code <cache>/models--ORG--NAME/{blobs,snapshots/<rev>,refs}}), so snapshots made by Python tools are reused and
 * the other way round. Transfers resume from {@code blobs/<hash>.incomplete} with HTTP range requests; each file is
 * checked against the hub's sha256 (LFS files on Hugging Face, all files on ModelScope) or git blob id, and a
 * mismatch deletes the partial file and fails. In offline mode only the cache is read.
 */
public final class HubDownloader {
    /** A file of a repository as the hub lists it. {@code sha256} or {@code gitSha1} may be null. */
    public record RemoteFile(String path, long size, String sha256, String gitSha1) {
        String blobName() { return sha256 != null ? sha256 : gitSha1 != null ? gitSha1 : null; }
    }

    private final HubSettings settings;
    private final HttpClient http;
    private final ObjectMapper json = new ObjectMapper();

    public HubDownloader(HubSettings settings) {
        this.settings = settings;
        this.http = HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NORMAL).connectTimeout(Duration.ofSeconds(30)).build();
    }

    /** {@code models--ORG--NAME} under the cache root. */
    public Path repoFolder(String repoId) {
        checkRepoId(repoId);
        return settings.cacheRoot().resolve("models--" + repoId.replace("/", "--"));
    }

    static void checkRepoId(String repoId) {
        if (!repoId.matches("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*") || repoId.contains(".."))
            throw new IllegalArgumentException("invalid repository id '" + repoId + "' (expected ORG/NAME)");
    }

    /** The cached snapshot for {@code revision} (a branch, tag or commit), if there is one. */
    public Optional<Path> cachedSnapshot(String repoId, String revision) {
        Path repo = repoFolder(repoId);
        String commit = revision;
        Path ref = repo.resolve("refs").resolve(revision);
        try {
            if (Files.isRegularFile(ref)) commit = Files.readString(ref).strip();
        } catch (IOException e) {
            return Optional.empty();
        }
        Path snap = repo.resolve("snapshots").resolve(commit);
        return Files.isDirectory(snap) ? Optional.of(snap) : Optional.empty();
    }

    /**
     * The snapshot folder of {@code repoId} at {@code revision} (null: main / master), downloading the files that
     * match {@code include} (glob patterns; empty = all) unless they are cached already.
     */
    public Path download(String repoId, String revision, List<String> include) {
        String rev = revision != null ? revision : settings.source() == HubSettings.Source.HUGGINGFACE ? "main" : "master";
        if (settings.offline()) {
            return cachedSnapshot(repoId, rev).orElseThrow(() -> new IllegalStateException("offline mode (HF_HUB_OFFLINE): "
                    + repoId + "@" + rev + " is not in the cache " + settings.cacheRoot()));
        }
        Listing listing = settings.source() == HubSettings.Source.HUGGINGFACE ? listHuggingFace(repoId, rev) : listModelScope(repoId, rev);
        Path repo = repoFolder(repoId);
        Path snap = repo.resolve("snapshots").resolve(listing.commit());
        List<PathMatcher> globs = new ArrayList<>();
        for (String g : include) globs.add(FileSystems.getDefault().getPathMatcher("glob:" + g));
        try {
            Files.createDirectories(repo.resolve("blobs"));
            Files.createDirectories(snap);
            for (RemoteFile f : listing.files()) {
                Path rel = safeRelative(f.path());
                if (!globs.isEmpty() && globs.stream().noneMatch(m -> m.matches(rel) || m.matches(rel.getFileName()))) continue;
                fetch(repoId, listing.commit(), rev, f, repo, snap.resolve(rel.toString()));
            }
            if (!rev.equals(listing.commit())) {
                Files.createDirectories(repo.resolve("refs"));
                Files.writeString(repo.resolve("refs").resolve(rev), listing.commit());
            }
        } catch (IOException e) {
            throw new UncheckedIOException("download of " + repoId + " failed: " + e.getMessage(), e);
        }
        return snap;
    }

    private static Path safeRelative(String p) {
        Path rel = Path.of(p).normalize();
        if (rel.isAbsolute() || rel.startsWith("..") || p.contains("\\"))
            throw new IllegalStateException("the hub listed an unsafe file path: " + p);
        return rel;
    }

    private record Listing(String commit, List<RemoteFile> files) {}

    private Listing listHuggingFace(String repoId, String rev) {
        JsonNode root = getJson(settings.endpoint() + "/api/models/" + repoId + "/revision/" + enc(rev) + "?blobs=true");
        String commit = root.path("sha").asText(rev);
        List<RemoteFile> files = new ArrayList<>();
        for (JsonNode s : root.path("siblings")) {
            JsonNode lfs = s.get("lfs");
            String sha = lfs != null ? lfs.path("sha256").asText(null) : null;
            long size = lfs != null ? lfs.path("size").asLong(-1) : s.path("size").asLong(-1);
            files.add(new RemoteFile(s.path("rfilename").asText(), size, sha, lfs == null ? s.path("blobId").asText(null) : null));
        }
        return new Listing(commit, files);
    }

    private Listing listModelScope(String repoId, String rev) {
        JsonNode root = getJson(settings.endpoint() + "/api/v1/models/" + repoId + "/repo/files?Revision=" + enc(rev) + "&Recursive=true");
        List<RemoteFile> files = new ArrayList<>();
        String commit = rev;
        for (JsonNode f : root.path("Data").path("Files")) {
            if (!"blob".equals(f.path("Type").asText("blob"))) continue;
            files.add(new RemoteFile(f.path("Path").asText(), f.path("Size").asLong(-1), f.path("Sha256").asText(null), null));
            if (f.hasNonNull("Revision") && commit.equals(rev)) commit = f.get("Revision").asText(rev);
        }
        return new Listing(safeRelative(commit).toString(), files);
    }

    private String fileUrl(String repoId, String commit, RemoteFile f) {
        if (settings.source() == HubSettings.Source.HUGGINGFACE)
            return settings.endpoint() + "/" + repoId + "/resolve/" + enc(commit) + "/" + encPath(f.path());
        return settings.endpoint() + "/api/v1/models/" + repoId + "/repo?Revision=" + enc(commit) + "&FilePath=" + enc(f.path());
    }

    private void fetch(String repoId, String commit, String rev, RemoteFile f, Path repo, Path target) throws IOException {
        String blobName = f.blobName() != null ? f.blobName() : "nohash-" + sha256Hex(f.path().getBytes(StandardCharsets.UTF_8));
        Path blob = repo.resolve("blobs").resolve(blobName);
        if (!(Files.isRegularFile(blob) && (f.size() < 0 || Files.size(blob) == f.size()))) {
            Path part = repo.resolve("blobs").resolve(blobName + ".incomplete");
            transfer(fileUrl(repoId, commit, f), part, f);
            verify(part, f);
            Files.move(part, blob, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
        }
        Files.createDirectories(target.getParent());
        Files.deleteIfExists(target);
        try {
            Files.createSymbolicLink(target, target.getParent().relativize(blob));
        } catch (UnsupportedOperationException | IOException e) {
            Files.copy(blob, target, StandardCopyOption.REPLACE_EXISTING);
        }
    }

    /** Downloads into {@code part}, resuming after the bytes already there; retries a cut connection a few times. */
    private void transfer(String url, Path part, RemoteFile f) throws IOException {
        IOException last = null;
        for (int attempt = 0; attempt < 5; attempt++) {
            long have = Files.exists(part) ? Files.size(part) : 0;
            if (f.size() >= 0 && have == f.size()) return;
            if (f.size() >= 0 && have > f.size()) {
                Files.delete(part);
                have = 0;
            }
            HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofMinutes(30)).GET();
            if (settings.token() != null) rb.header("Authorization", "Bearer " + settings.token());
            if (have > 0) rb.header("Range", "bytes=" + have + "-");
            try {
                HttpResponse<InputStream> r = http.send(rb.build(), HttpResponse.BodyHandlers.ofInputStream());
                try (InputStream in = r.body()) {
                    int st = r.statusCode();
                    if (st == 416 && have > 0) return;
                    if (st == 401 || st == 403) throw new IOException("HTTP " + st + " for " + f.path() + " (gated or private? set HF_TOKEN / MODELSCOPE_API_TOKEN)");
                    if (st != 200 && st != 206) throw new IOException("HTTP " + st + " for " + f.path());
                    boolean append = st == 206;
                    if (!append) have = 0;
                    try (OutputStream out = Files.newOutputStream(part, StandardOpenOption.CREATE,
                            append ? StandardOpenOption.APPEND : StandardOpenOption.TRUNCATE_EXISTING, StandardOpenOption.WRITE);
                         ProgressBar bar = progressBar(f, have)) {
                        byte[] buf = new byte[1 << 16];
                        for (int n; (n = in.read(buf)) > 0; ) {
                            out.write(buf, 0, n);
                            if (bar != null) bar.stepBy(n);
                        }
                    }
                }
                if (f.size() < 0 || Files.size(part) == f.size()) return;
                last = new IOException("connection closed after " + Files.size(part) + " of " + f.size() + " bytes of " + f.path());
            } catch (IOException e) {
                if (e.getMessage() != null && e.getMessage().startsWith("HTTP ")) throw e;
                last = e;
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                throw new IOException("interrupted", e);
            }
        }
        throw last;
    }

    private ProgressBar progressBar(RemoteFile f, long start) {
        if (!settings.progress()) return null;
        return new ProgressBarBuilder().setTaskName(f.path()).setInitialMax(Math.max(f.size(), 0)).startsFrom(start, Duration.ZERO)
                .setUnit("MiB", 1 << 20).setStyle(ProgressBarStyle.ASCII).showSpeed().continuousUpdate().build();
    }

    private static void verify(Path part, RemoteFile f) throws IOException {
        if (f.sha256() == null && f.gitSha1() == null) return;
        String got;
        try (InputStream in = Files.newInputStream(part)) {
            MessageDigest md = MessageDigest.getInstance(f.sha256() != null ? "SHA-256" : "SHA-1");
            if (f.sha256() == null) md.update(("blob " + Files.size(part) + "\0").getBytes(StandardCharsets.UTF_8));
            byte[] buf = new byte[1 << 16];
            for (int n; (n = in.read(buf)) > 0; ) md.update(buf, 0, n);
            got = HexFormat.of().formatHex(md.digest());
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
        String want = f.sha256() != null ? f.sha256() : f.gitSha1();
        if (!got.equalsIgnoreCase(want)) {
            Files.deleteIfExists(part);
            throw new IOException("checksum mismatch for " + f.path() + ": expected " + want + ", got " + got + " (partial file removed)");
        }
    }

    private JsonNode getJson(String url) {
        HttpRequest.Builder rb = HttpRequest.newBuilder(URI.create(url)).timeout(Duration.ofSeconds(60)).GET();
        if (settings.token() != null) rb.header("Authorization", "Bearer " + settings.token());
        try {
            HttpResponse<byte[]> r = http.send(rb.build(), HttpResponse.BodyHandlers.ofByteArray());
            if (r.statusCode() == 404) throw new IllegalArgumentException("not found on the hub: " + url);
            if (r.statusCode() == 401 || r.statusCode() == 403)
                throw new IllegalArgumentException("HTTP " + r.statusCode() + " from the hub (gated or private repository? set a token)");
            if (r.statusCode() != 200) throw new IllegalStateException("HTTP " + r.statusCode() + " from " + url);
            return json.readTree(r.body());
        } catch (IOException e) {
            throw new UncheckedIOException("could not reach the hub at " + settings.endpoint() + ": " + e.getMessage(), e);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IllegalStateException("interrupted", e);
        }
    }

    private static String enc(String s) { return URLEncoder.encode(s, StandardCharsets.UTF_8).replace("+", "%20"); }

    private static String encPath(String p) {
        StringJoiner j = new StringJoiner("/");
        for (String part : p.split("/")) j.add(enc(part));
        return j.toString();
    }

    static String sha256Hex(byte[] b) {
        try {
            return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(b));
        } catch (NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
