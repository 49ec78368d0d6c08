package dev.vlm4j.cli;

import dev.vlm4j.api.ChatOptions;
import dev.vlm4j.api.ChatResult;
import dev.vlm4j.api.VisionLanguageModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.Callable;

/** {@code vlm4j chat}: an interactive multi-turn conversation on the terminal. */
@Command(name = "chat", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Talk with the model interactively (multi-turn, images, thinking on/off).",
                "Type a message and press Enter. Commands:",
                "  /image PATH   attach an image to your next message     /video PATH  attach a video",
                "  /think on|off switch MiMo-VL thinking                  /clear       forget the conversation",
                "  /exit         quit (or end input with Ctrl-D)"})
public final class ChatCommand implements Callable<Integer> {
    @Mixin ModelOptions model;

    @Option(names = "--system", paramLabel = "TEXT", description = "A system message for the whole conversation.")
    String system;

    @Mixin SamplingMixin sampling;

    @Override
    public Integer call() throws Exception {
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        ChatOptions opts = sampling.options();
        try (VisionLanguageModel vlm = model.load()) {
            out.println("vlm4j chat: " + model.model + " loaded. /exit to quit, /image PATH to attach an image.");
            List<Map<String, Object>> history = new ArrayList<>();
            if (system != null) history.add(Map.of("role", "system", "content", system));
            List<String> images = new ArrayList<>(), videos = new ArrayList<>();
            while (true) {
                out.print("> ");
                out.flush();
                String line = in.readLine();
                if (line == null) break;
                line = line.strip();
                if (line.isEmpty()) continue;
                if (line.equals("/exit") || line.equals("/quit")) break;
                if (line.startsWith("/image ")) { images.add(line.substring(7).strip()); out.println("(image attached)"); continue; }
                if (line.startsWith("/video ")) { videos.add(line.substring(7).strip()); out.println("(video attached)"); continue; }
                if (line.equals("/clear")) {
                    history.removeIf(m -> !"system".equals(m.get("role")));
                    out.println("(conversation cleared)");
                    continue;
                }
                if (line.startsWith("/think")) {
                    opts = opts.withThinking(!line.endsWith("off"));
                    out.println("(thinking " + (opts.enableThinking() ? "on" : "off") + ")");
                    continue;
                }
                if (line.startsWith("/")) { out.println("unknown command " + line.split(" ")[0] + " (try /image, /video, /think, /clear, /exit)"); continue; }
                history.add(Map.of("role", "user", "content", InferCommand.userContent(images, videos, line)));
                images = new ArrayList<>();
                videos = new ArrayList<>();
                try {
                    ChatResult r = vlm.chat(history, opts, piece -> { out.print(piece); out.flush(); });
                    out.println();
                    history.add(Map.of("role", "assistant", "content", r.answer() == null ? r.text() : r.answer()));
                } catch (RuntimeException e) {
                    history.remove(history.size() - 1);
                    out.println("error: " + e.getMessage());
                }
            }
        }
        return 0;
    }
}
