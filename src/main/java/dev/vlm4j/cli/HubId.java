package dev.vlm4j.cli;

import dev.vlm4j.hub.HubDownloader;
import dev.vlm4j.hub.HubSettings;

import java.nio.file.Path;
import java.util.List;

/** Resolution of {@code --model ORG/NAME}: the cached Hugging Face snapshot, else a download (unless offline). */
final class HubId {
    private HubId() {}

    static boolean looksLikeHubId(String s) {
        return s.matches("[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*") && !s.contains("..");
    }

    static Path resolve(String id) {
        String source = System.getenv().getOrDefault("VLM4J_HUB", "huggingface");
        HubSettings s = HubSettings.fromEnvironment(HubSettings.Source.parse(source), System.getenv());
        HubDownloader d = new HubDownloader(s);
        String rev = s.source() == HubSettings.Source.HUGGINGFACE ? "main" : "master";
        return d.cachedSnapshot(id, rev).orElseGet(() -> d.download(id, rev, List.of()));
    }
}
