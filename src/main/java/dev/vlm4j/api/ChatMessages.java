package dev.vlm4j.api;

import java.util.*;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Chat messages in the forms users write them, normalised for the chat template, with their media pulled out in
 * prompt order.
 * <ul>
 *   <li>Hugging Face / OpenAI content parts: {@code {"type":"image","image": src}}, {@code {"type":"image","url"|"path": src}},
 *       {@code {"type":"image_url","image_url":{"url": src}}}, {@code {"type":"video","video": src | [frames]}},
 *       {@code {"type":"video_url","video_url":{"url": src}}}, {@code {"type":"text","text": ...}}.</li>
 *   <li>ms-swift rows: string content with {@code <image>} / {@code <video>} tags, and {@code images} / {@code videos}
 *       lists beside the messages, used in order.</li>
 * </ul>
 * Templates see image parts as {@code {"type":"image"}} and video parts as {@code {"type":"video"}}.
 */
public final class ChatMessages {
    /** A media item: an image or video source (path, file:// or data: URI, URL, bytes, or a frame list for video). */
    public record Media(boolean video, Object source, Double fps) {}

    public record Prepared(List<Map<String, Object>> messages, List<Media> media) {
        public long imageCount() { return media.stream().filter(m -> !m.video()).count(); }
        public long videoCount() { return media.stream().filter(Media::video).count(); }
    }

    private static final Pattern TAG = Pattern.compile("<(image|video)>");

    private ChatMessages() {}

    public static Prepared prepare(List<Map<String, Object>> messages) {
        return prepare(messages, List.of(), List.of());
    }

    /** Normalises messages; {@code images} / {@code videos} fill ms-swift {@code <image>} / {@code <video>} tags in order. */
    public static Prepared prepare(List<Map<String, Object>> messages, List<?> images, List<?> videos) {
        List<Map<String, Object>> out = new ArrayList<>();
        List<Media> media = new ArrayList<>();
        int[] next = {0, 0};
        for (int mi = 0; mi < messages.size(); mi++) {
            Map<String, Object> m = messages.get(mi);
            if (m == null || !(m.get("role") instanceof String))
                throw new IllegalArgumentException("message " + mi + " has no \"role\"");
            Map<String, Object> copy = new LinkedHashMap<>(m);
            Object content = m.get("content");
            if (content instanceof String s && TAG.matcher(s).find() && !(images.isEmpty() && videos.isEmpty())) {
                List<Object> parts = new ArrayList<>();
                Matcher mt = TAG.matcher(s);
                int last = 0;
                while (mt.find()) {
                    if (mt.start() > last) parts.add(Map.of("type", "text", "text", s.substring(last, mt.start())));
                    boolean video = mt.group(1).equals("video");
                    List<?> src = video ? videos : images;
                    int k = next[video ? 1 : 0]++;
                    if (k >= src.size())
                        throw new IllegalArgumentException("message " + mi + " has more <" + mt.group(1) + "> tags than the "
                                + (video ? "videos" : "images") + " list has entries (" + src.size() + ")");
                    parts.add(Map.of("type", mt.group(1), mt.group(1), src.get(k)));
                    last = mt.end();
                }
                if (last < s.length()) parts.add(Map.of("type", "text", "text", s.substring(last)));
                content = parts;
            }
            if (content instanceof List<?> parts) {
                List<Object> norm = new ArrayList<>();
                for (Object p : parts) {
                    if (!(p instanceof Map<?, ?> part)) {
                        norm.add(p);
                        continue;
                    }
                    String type = String.valueOf(part.get("type"));
                    switch (type) {
                        case "image", "image_url" -> {
                            Object src = part.get("image");
                            if (src == null) src = part.get("url");
                            if (src == null) src = part.get("path");
                            if (src == null && part.get("image_url") instanceof Map<?, ?> iu) src = iu.get("url");
                            if (src == null && part.get("image_url") instanceof String s2) src = s2;
                            media.add(new Media(false, src, null));
                            norm.add(withType(part, "image"));
                        }
                        case "video", "video_url" -> {
                            Object src = part.get("video");
                            if (src == null) src = part.get("url");
                            if (src == null) src = part.get("path");
                            if (src == null && part.get("video_url") instanceof Map<?, ?> vu) src = vu.get("url");
                            Object fps = part.get("fps");
                            media.add(new Media(true, src, fps instanceof Number f ? f.doubleValue() : null));
                            norm.add(withType(part, "video"));
                        }
                        default -> norm.add(p);
                    }
                }
                copy.put("content", norm);
            }
            out.add(copy);
        }
        if (next[0] < images.size() || next[1] < videos.size()) {
            if (next[0] == 0 && next[1] == 0 && !(images.isEmpty() && videos.isEmpty()))
                throw new IllegalArgumentException("images/videos were given but no message has an <image> or <video> tag");
            if (next[0] < images.size())
                throw new IllegalArgumentException(images.size() + " images were given but only " + next[0] + " <image> tags appear");
            throw new IllegalArgumentException(videos.size() + " videos were given but only " + next[1] + " <video> tags appear");
        }
        return new Prepared(out, media);
    }

    private static Map<String, Object> withType(Map<?, ?> part, String type) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("type", type);
        return m;
    }

    /** The last user message's text with MiMo-VL's thinking switch appended (used when thinking is off). */
    public static List<Map<String, Object>> withThinkingOff(List<Map<String, Object>> messages, String suffix) {
        List<Map<String, Object>> out = new ArrayList<>(messages);
        for (int i = out.size() - 1; i >= 0; i--) {
            if (!"user".equals(out.get(i).get("role"))) continue;
            Map<String, Object> m = new LinkedHashMap<>(out.get(i));
            Object c = m.get("content");
            if (c instanceof String s) {
                if (!s.stripTrailing().endsWith(suffix)) m.put("content", s + " " + suffix);
            } else if (c instanceof List<?> parts) {
                List<Object> np = new ArrayList<>(parts);
                np.add(Map.of("type", "text", "text", " " + suffix));
                m.put("content", np);
            }
            out.set(i, m);
            break;
        }
        return out;
    }
}
