package dev.vlm4j.serve;

import dev.vlm4j.preprocess.image.ImageException;
import dev.vlm4j.preprocess.image.ImageLoader;
import dev.vlm4j.preprocess.image.RgbImage;

import javax.imageio.ImageIO;
import javax.imageio.ImageReader;
import javax.imageio.stream.ImageInputStream;
import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.net.*;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.*;

/**
 * Turns the media URLs of a request into decoded images and video files, under the server's rules: {@code data:}
 * URLs always (valid base64, bounded pixels); {@code http(s)} only with {@code --allow-remote-media}, only to public
 * addresses (no loopback, link-local, private or multicast ones, so no cloud metadata endpoints) and, when an
 * allowlist is set, only to its hosts, without following redirects; local paths and {@code file:} URLs only under
 * {@code --allowed-local-media-path} (after resolving links and {@code ..}). Violations are 400s; bytes that are not
 * an image, or images over the pixel limit, are 422s.
 */
public final class MediaResolver {
    private final ServeConfig config;
    private final HttpClient http;
    private final List<Path> tempFiles = new ArrayList<>();

    public MediaResolver(ServeConfig config) {
        this.config = config;
        this.http = config.allowRemoteMedia()
                ? HttpClient.newBuilder().followRedirects(HttpClient.Redirect.NEVER).connectTimeout(Duration.ofSeconds(10)).build()
                : null;
    }

    /** Decodes the image at {@code url}; {@code param} names the request field in errors. */
    public RgbImage image(String url, String param) {
        byte[] bytes = bytes(url, param);
        int[] wh = dimensions(bytes, param);
        if ((long) wh[0] * wh[1] > config.maxImagePixels())
            throw ApiException.unprocessable(param, "the image is " + wh[0] + "x" + wh[1] + " pixels; at most "
                    + config.maxImagePixels() + " pixels are accepted");
        try {
            return ImageLoader.decode(bytes, "in " + param);
        } catch (ImageException e) {
            throw ApiException.unprocessable(param, "the image could not be decoded");
        }
    }

    /** A local video file for {@code url} (a data: URL is written to a temporary file, removed by {@link #cleanup()}). */
    public String videoFile(String url, String param) {
        String lower = url.strip().toLowerCase(Locale.ROOT);
        if (lower.startsWith("data:") || lower.startsWith("http:") || lower.startsWith("https:")) {
            byte[] b = bytes(url, param);
            try {
                Path f = Files.createTempFile("vlm4j-video-", ".bin");
                tempFiles.add(f);
                Files.write(f, b);
                return f.toString();
            } catch (IOException e) {
                throw new ApiException(500, "server_error", "internal_error", null, "could not store the video");
            }
        }
        return localPath(url, param).toString();
    }

    /** Deletes temporary files made for this request. */
    public void cleanup() {
        for (Path f : tempFiles) {
            try {
                Files.deleteIfExists(f);
            } catch (IOException ignored) {
                // best effort
            }
        }
        tempFiles.clear();
    }

    private byte[] bytes(String url, String param) {
        String s = url.strip();
        String lower = s.length() > 8 ? s.substring(0, 8).toLowerCase(Locale.ROOT) : s.toLowerCase(Locale.ROOT);
        if (lower.startsWith("data:")) return dataUrl(s, param);
        if (lower.startsWith("http://") || lower.startsWith("https://")) return remote(s, param);
        Path p = localPath(s, param);
        try {
            if (Files.size(p) > config.maxBodyBytes())
                throw ApiException.unprocessable(param, "the local file is larger than " + config.maxBodyBytes() + " bytes");
            return Files.readAllBytes(p);
        } catch (IOException e) {
            throw ApiException.badRequest(param, "the local file could not be read");
        }
    }

    static byte[] dataUrl(String s, String param) {
        int comma = s.indexOf(',');
        if (comma < 0) throw ApiException.badRequest(param, "invalid data URL: no ',' before the payload");
        String meta = s.substring(5, comma).toLowerCase(Locale.ROOT);
        if (!meta.endsWith(";base64")) throw ApiException.badRequest(param, "data URLs must be base64-encoded (data:<mime>;base64,...)");
        String payload = s.substring(comma + 1);
        try {
            byte[] b = Base64.getDecoder().decode(payload.replaceAll("\\s", ""));
            if (b.length == 0) throw ApiException.badRequest(param, "the data URL is empty");
            return b;
        } catch (IllegalArgumentException e) {
            throw ApiException.badRequest(param, "invalid base64 in the data URL");
        }
    }

    /** Width and height from the image header, without decoding the pixels. */
    static int[] dimensions(byte[] bytes, String param) {
        try (ImageInputStream in = ImageIO.createImageInputStream(new ByteArrayInputStream(bytes))) {
            Iterator<ImageReader> it = in == null ? Collections.emptyIterator() : ImageIO.getImageReaders(in);
            if (!it.hasNext()) throw ApiException.unprocessable(param, "the bytes are not an image in a supported format");
            ImageReader r = it.next();
            try {
                r.setInput(in, true, true);
                return new int[]{r.getWidth(0), r.getHeight(0)};
            } finally {
                r.dispose();
            }
        } catch (IOException | RuntimeException e) {
            if (e instanceof ApiException a) throw a;
            throw ApiException.unprocessable(param, "the image header could not be read");
        }
    }

    private Path localPath(String s, String param) {
        Path root = config.allowedLocalMediaPath();
        if (root == null)
            throw ApiException.badRequest(param, "local media paths are not allowed (start the server with --allowed-local-media-path)");
        Path p;
        try {
            p = s.regionMatches(true, 0, "file:", 0, 5) ? Path.of(URI.create(s)) : root.resolve(s);
            Path real = p.toRealPath();
            if (!real.startsWith(root.toRealPath()) || !Files.isRegularFile(real))
                throw ApiException.badRequest(param, "the path is outside the allowed media folder");
            return real;
        } catch (IOException | IllegalArgumentException e) {
            throw ApiException.badRequest(param, "the path is not a readable file under the allowed media folder");
        }
    }

    private byte[] remote(String s, String param) {
        if (!config.allowRemoteMedia())
            throw ApiException.badRequest(param, "remote media URLs are disabled (start the server with --allow-remote-media)");
        URI uri;
        try {
            uri = new URI(s);
        } catch (URISyntaxException e) {
            throw ApiException.badRequest(param, "invalid URL");
        }
        String host = uri.getHost();
        if (host == null || uri.getUserInfo() != null) throw ApiException.badRequest(param, "invalid URL host");
        if (!config.remoteHosts().isEmpty() && config.remoteHosts().stream().noneMatch(h -> h.equalsIgnoreCase(host)))
            throw ApiException.badRequest(param, "the host " + host + " is not in the allowed media hosts");
        checkPublic(host, param);
        try {
            HttpResponse<InputStream> r = http.send(HttpRequest.newBuilder(uri).timeout(Duration.ofSeconds(30)).GET().build(),
                    HttpResponse.BodyHandlers.ofInputStream());
            try (InputStream in = r.body()) {
                if (r.statusCode() != 200) throw ApiException.badRequest(param, "fetching the media URL gave HTTP " + r.statusCode());
                byte[] b = in.readNBytes((int) Math.min(Integer.MAX_VALUE - 8, config.maxRemoteBytes() + 1));
                if (b.length > config.maxRemoteBytes())
                    throw new ApiException(413, "invalid_request_error", "media_too_large", param, "the remote media is too large");
                return b;
            }
        } catch (IOException e) {
            throw ApiException.badRequest(param, "the media URL could not be fetched");
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ApiException(503, "server_error", "interrupted", null, "interrupted");
        }
    }

    /** Rejects hosts that resolve to any non-public address. */
    static void checkPublic(String host, String param) {
        InetAddress[] all;
        try {
            all = InetAddress.getAllByName(host);
        } catch (UnknownHostException e) {
            throw ApiException.badRequest(param, "the media host could not be resolved");
        }
        for (InetAddress a : all) {
            if (!isPublic(a)) throw ApiException.badRequest(param, "media URLs must point to public addresses");
        }
    }

    static boolean isPublic(InetAddress a) {
        if (a.isAnyLocalAddress() || a.isLoopbackAddress() || a.isLinkLocalAddress() || a.isSiteLocalAddress()
                || a.isMulticastAddress()) return false;
        byte[] b = a.getAddress();
        if (b.length == 4) {
            int x = b[0] & 0xff, y = b[1] & 0xff;
            if (x == 0 || (x == 100 && y >= 64 && y < 128) || (x == 169 && y == 254) || (x == 198 && (y == 18 || y == 19)) || x >= 224)
                return false;
        } else if ((b[0] & 0xfe) == 0xfc) {
            return false; // fc00::/7 unique local
        } else if (a instanceof Inet6Address && b[0] == 0 && b[10] == (byte) 0xff && b[11] == (byte) 0xff) {
            try {
                return isPublic(InetAddress.getByAddress(Arrays.copyOfRange(b, 12, 16))); // IPv4-mapped
            } catch (UnknownHostException e) {
                return false;
            }
        }
        return true;
    }
}
