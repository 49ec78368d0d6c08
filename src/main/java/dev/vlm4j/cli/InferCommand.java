package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import dev.vlm4j.api.ChatResult;
import dev.vlm4j.api.VisionLanguageModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j infer}: one prompt (with optional images and videos), streamed to stdout; or, with
 * {@code --adapters CKPT --load_data_args true}, the held-out split of the training run re-answered into a result
 * JSONL (ms-swift's {@code swift infer --load_data_args true}).
 */
@Command(name = "infer", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Answer one prompt, streaming the text to stdout as it is generated.",
                "Thinking is on by default (MiMo-VL answers as <think>...</think> then the answer).",
                "With --adapters CKPT --load_data_args true: answer the training run's held-out split (its --val_dataset or",
                "--split_dataset_ratio part, from CKPT/args.json or CKPT/../args.json) and write CKPT/infer_result/*.jsonl."})
public final class InferCommand implements Callable<Integer> {
    @Mixin ModelOptions model;

    @Option(names = "--prompt", paramLabel = "TEXT", description = "The user message (required unless --load_data_args true).")
    String prompt;

    @Option(names = "--system", paramLabel = "TEXT", description = "A system message.")
    String system;

    @Option(names = "--image", paramLabel = "PATH", description = "Image file, file:// or data: URI (repeatable; placed before the text).")
    List<String> images = new ArrayList<>();

    @Option(names = "--video", paramLabel = "PATH", description = "Video file (repeatable; placed before the text).")
    List<String> videos = new ArrayList<>();

    @Option(names = "--json", description = "Print one JSON result object (reasoning, answer, tokens, timings) instead of streaming.")
    boolean json;

    @Option(names = "--load_data_args", arity = "1", paramLabel = "BOOL", defaultValue = "false",
            description = "Read the adapter run's args.json and answer its held-out split (default: ${DEFAULT-VALUE}).")
    boolean loadDataArgs;

    @Option(names = "--result_path", paramLabel = "FILE",
            description = "Result JSONL for --load_data_args (default: CKPT/infer_result/YYYYMMDD-HHMMSS.jsonl).")
    java.nio.file.Path resultPath;

    @Mixin SamplingMixin sampling;

    @Override
    public Integer call() throws Exception {
        if (loadDataArgs) return HeldOutInfer.run(model, sampling.options(), resultPath);
        if (prompt == null) throw new IllegalArgumentException("--prompt is required (or use --adapters CKPT --load_data_args true)");
        List<Map<String, Object>> messages = new ArrayList<>();
        if (system != null) messages.add(Map.of("role", "system", "content", system));
        messages.add(Map.of("role", "user", "content", userContent(images, videos, prompt)));
        PrintStream out = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);
        try (VisionLanguageModel vlm = model.load()) {
            ChatResult r = vlm.chat(messages, sampling.options(), json ? null : piece -> {
                out.print(piece);
                out.flush();
            });
            if (json) {
                out.println(toJson(r));
            } else {
                out.println();
                System.err.printf(Locale.ROOT, "[%d prompt tokens, %d generated, %s; prefill %.0f ms, decode %.1f tok/s]%n",
                        r.promptTokens(), r.completionTokens(), r.finishReason(), r.prefillMillis(), r.decodeTokensPerSecond());
            }
        }
        return 0;
    }

    static Object userContent(List<String> images, List<String> videos, String text) {
        if (images.isEmpty() && videos.isEmpty()) return text;
        List<Object> parts = new ArrayList<>();
        for (String i : images) parts.add(Map.of("type", "image", "image", i));
        for (String v : videos) parts.add(Map.of("type", "video", "video", v));
        parts.add(Map.of("type", "text", "text", text));
        return parts;
    }

    static String toJson(ChatResult r) throws Exception {
        ObjectMapper m = new ObjectMapper();
        ObjectNode o = m.createObjectNode();
        o.put("reasoning", r.reasoning());
        o.put("answer", r.answer());
        o.put("text", r.text());
        o.put("finish_reason", r.finishReason());
        o.put("prompt_tokens", r.promptTokens());
        o.put("completion_tokens", r.completionTokens());
        var ids = o.putArray("token_ids");
        for (int t : r.tokens()) ids.add(t);
        o.put("prefill_ms", r.prefillMillis());
        o.put("decode_ms", r.decodeMillis());
        o.put("decode_tokens_per_s", r.decodeTokensPerSecond());
        return m.writeValueAsString(o);
    }

}
