package dev.vlm4j.api;

import org.junit.jupiter.api.Test;

import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

class ChatMessagesTest {
    @Test
    void openAiAndHuggingFacePartsBecomeTemplatePartsWithMediaInOrder() {
        List<Map<String, Object>> msgs = List.of(Map.of("role", "user", "content", List.of(
                Map.of("type", "image_url", "image_url", Map.of("url", "data:image/png;base64,AAAA")),
                Map.of("type", "video", "video", "clip.mp4"),
                Map.of("type", "image", "image", "b.png"),
                Map.of("type", "text", "text", "Compare."))));
        ChatMessages.Prepared p = ChatMessages.prepare(msgs);
        assertEquals(List.of("data:image/png;base64,AAAA", "clip.mp4", "b.png"), p.media().stream().map(m -> m.source().toString()).toList());
        assertEquals(List.of(false, true, false), p.media().stream().map(ChatMessages.Media::video).toList());
        List<?> parts = (List<?>) p.messages().get(0).get("content");
        assertEquals(Map.of("type", "image"), parts.get(0));
        assertEquals(Map.of("type", "video"), parts.get(1));
        assertEquals(Map.of("type", "text", "text", "Compare."), parts.get(3));
    }

    @Test
    void msSwiftTagsTakeImagesFromTheList() {
        List<Map<String, Object>> msgs = List.of(Map.of("role", "user", "content", "<image>What is this?<image>"),
                Map.of("role", "assistant", "content", "Cats."));
        ChatMessages.Prepared p = ChatMessages.prepare(msgs, List.of("a.png", "b.png"), List.of());
        assertEquals(2, p.imageCount());
        List<?> parts = (List<?>) p.messages().get(0).get("content");
        assertEquals(3, parts.size());
        assertEquals(Map.of("type", "text", "text", "What is this?"), parts.get(1));
        assertEquals("Cats.", p.messages().get(1).get("content"));
    }

    @Test
    void tagAndListCountsMustAgree() {
        List<Map<String, Object>> msgs = List.of(Map.of("role", "user", "content", "<image><image>Hi"));
        var e = assertThrows(IllegalArgumentException.class, () -> ChatMessages.prepare(msgs, List.of("a.png"), List.of()));
        assertTrue(e.getMessage().contains("more <image> tags"), e.getMessage());
        var e2 = assertThrows(IllegalArgumentException.class,
                () -> ChatMessages.prepare(List.of(Map.of("role", "user", "content", "<image>Hi")), List.of("a.png", "b.png"), List.of()));
        assertTrue(e2.getMessage().contains("2 images were given"), e2.getMessage());
        assertThrows(IllegalArgumentException.class, () -> ChatMessages.prepare(List.of(Map.of("content", "x"))));
    }

    @Test
    void thinkingOffAppendsTheSwitchToTheLastUserTurnOnly() {
        List<Map<String, Object>> msgs = List.of(Map.of("role", "user", "content", "a"), Map.of("role", "assistant", "content", "b"),
                Map.of("role", "user", "content", "c"));
        List<Map<String, Object>> off = ChatMessages.withThinkingOff(msgs, "/no_think");
        assertEquals("a", off.get(0).get("content"));
        assertEquals("c /no_think", off.get(2).get("content"));
        assertEquals("c /no_think", ChatMessages.withThinkingOff(off, "/no_think").get(2).get("content"), "not appended twice");
    }
}
