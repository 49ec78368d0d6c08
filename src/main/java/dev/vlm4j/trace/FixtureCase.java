package dev.vlm4j.trace;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.api.ChatMessages;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

/**
 * One request in the reference-fixture format (see shared/fixtures/README.md): {@code case.json} naming the
 * messages file, the images and videos (frame lists with an fps) in the order their entries appear in the
 * messages, an optional training answer and adapter, and the generation settings.
 */
public record FixtureCase(Path dir, List<Map<String, Object>> messages, List<Path> images, List<VideoFrames> videos,
                          String answer, Path adapter, boolean generate, int maxNewTokens, boolean greedy, boolean stopAtEos) {

    public record VideoFrames(List<Path> frames, double fps) {}

    private static final ObjectMapper JSON = new ObjectMapper();

    @SuppressWarnings("unchecked")
    public static FixtureCase load(Path caseDir) {
        Path dir = caseDir.toAbsolutePath().normalize();
        Path cf = dir.resolve("case.json");
        if (!Files.isRegularFile(cf)) throw new IllegalArgumentException(dir + ": no case.json (not a fixture case folder)");
        try {
            JsonNode c = JSON.readTree(cf.toFile());
            Path mf = dir.resolve(c.path("messages").asText("messages.json"));
            if (!Files.isRegularFile(mf)) throw new IllegalArgumentException(cf + ": messages file " + mf.getFileName() + " not found");
            List<Map<String, Object>> messages = JSON.readValue(mf.toFile(), List.class);
            List<Path> images = new ArrayList<>();
            for (JsonNode i : c.path("images")) images.add(dir.resolve(i.asText()));
            List<VideoFrames> videos = new ArrayList<>();
            for (JsonNode v : c.path("videos")) {
                List<Path> frames = new ArrayList<>();
                for (JsonNode f : v.path("frames")) frames.add(dir.resolve(f.asText()));
                if (frames.isEmpty()) throw new IllegalArgumentException(cf + ": a video has no frames (only frame lists are supported in cases)");
                videos.add(new VideoFrames(frames, v.path("fps").asDouble(2.0)));
            }
            String answer = c.hasNonNull("answer") ? c.get("answer").asText() : null;
            Path adapter = c.hasNonNull("adapter") ? dir.resolve(c.get("adapter").asText()).normalize() : null;
            return new FixtureCase(dir, messages, images, videos, answer, adapter, c.path("generate").asBoolean(true),
                    c.path("max_new_tokens").asInt(16), c.path("greedy").asBoolean(true), c.path("stop_at_eos").asBoolean(true));
        } catch (IOException e) {
            throw new IllegalArgumentException(cf + ": " + e.getMessage());
        }
    }

    /** The media of the messages, with sources taken from the case's image and video lists in order. */
    public List<ChatMessages.Media> media(ChatMessages.Prepared prepared) {
        List<ChatMessages.Media> out = new ArrayList<>();
        int ii = 0, vi = 0;
        for (ChatMessages.Media m : prepared.media()) {
            if (!m.video()) {
                if (ii >= images.size()) throw new IllegalArgumentException(dir + ": the messages have more images than case.json lists");
                out.add(new ChatMessages.Media(false, images.get(ii++).toString(), null));
            } else {
                if (vi >= videos.size()) throw new IllegalArgumentException(dir + ": the messages have more videos than case.json lists");
                VideoFrames v = videos.get(vi++);
                out.add(new ChatMessages.Media(true, v.frames().stream().map(Path::toString).toList(), v.fps()));
            }
        }
        if (ii != images.size() || vi != videos.size())
            throw new IllegalArgumentException(dir + ": case.json lists " + images.size() + " images and " + videos.size()
                    + " videos but the messages use " + ii + " and " + vi);
        return out;
    }
}
