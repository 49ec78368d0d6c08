package dev.vlm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.api.ChatMessages;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.model.Qwen25VLModel;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

/**
 * An ms-swift JSONL dataset: one sample a line, {@code {"messages": [...], "images": [...], "videos": [...]}}, with
 * {@code <image>} / {@code <video>} tags in the message text filled from the lists in order (relative media paths
 * resolve against the file's folder). {@code PATH#N} keeps the first N samples.
 */
public final class SftDataset {
    /** One raw sample. */
    public record Sample(List<Map<String, Object>> messages, List<Object> images, List<Object> videos) {}

    /** A tokenized sample: ids, labels (-100 outside the trained assistant turn), media inputs. */
    public record Example(int[] ids, long[] labels, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos,
                          String promptText, String answer) {
        /** Tokens the loss counts (labels[t + 1] for t < length - 1 that are not -100). */
        public int lossTokens() {
            int c = 0;
            for (int t = 1; t < labels.length; t++) if (labels[t] != -100) c++;
            return c;
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    private final Path baseDir;
    private final List<Sample> samples;

    private SftDataset(Path baseDir, List<Sample> samples) {
        this.baseDir = baseDir;
        this.samples = samples;
    }

    public List<Sample> samples() { return samples; }

    /** Loads and concatenates several {@code PATH[#N]} specs. */
    public static SftDataset load(List<String> specs) {
        List<Sample> all = new ArrayList<>();
        Path base = null;
        for (String s : specs) {
            SftDataset d = load(s);
            if (base != null && !base.equals(d.baseDir))
                throw new IllegalArgumentException("datasets from different folders are not supported together yet: " + specs);
            base = d.baseDir;
            all.addAll(d.samples);
        }
        return new SftDataset(base, all);
    }

    /** Loads {@code PATH} or {@code PATH#N}. */
    @SuppressWarnings("unchecked")
    public static SftDataset load(String spec) {
        int hash = spec.lastIndexOf('#');
        int limit = Integer.MAX_VALUE;
        String path = spec;
        if (hash > 0 && spec.substring(hash + 1).matches("\\d+")) {
            limit = Integer.parseInt(spec.substring(hash + 1));
            path = spec.substring(0, hash);
        }
        Path file = Path.of(path).toAbsolutePath().normalize();
        if (!Files.isRegularFile(file)) throw new IllegalArgumentException("dataset " + file + " not found");
        List<Sample> out = new ArrayList<>();
        try {
            int lineNo = 0;
            for (String line : Files.readAllLines(file)) {
                lineNo++;
                if (line.isBlank()) continue;
                if (out.size() >= limit) break;
                Map<String, Object> row;
                try {
                    row = JSON.readValue(line, Map.class);
                } catch (IOException e) {
                    throw new IllegalArgumentException(file + ":" + lineNo + ": not valid JSON: " + e.getMessage());
                }
                Object msgs = row.get("messages");
                if (!(msgs instanceof List<?> l) || l.isEmpty())
                    throw new IllegalArgumentException(file + ":" + lineNo + ": no \"messages\" list");
                out.add(new Sample((List<Map<String, Object>>) msgs, list(row.get("images")), list(row.get("videos"))));
            }
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage());
        }
        if (out.isEmpty()) throw new IllegalArgumentException("dataset " + file + " holds no samples");
        return new SftDataset(file.getParent(), out);
    }

    private static List<Object> list(Object o) {
        if (o == null) return List.of();
        if (o instanceof List<?> l) return new ArrayList<>(l);
        return List.of(o);
    }

    /**
     * Tokenizes a sample: the conversation up to the last assistant turn is the prompt (rendered with
     * add_generation_prompt), the last assistant message plus {@code <|im_end|>\n} is the trained answer, as the
     * reference fixtures build training sequences. Only the last assistant turn carries labels.
     */
    public Example encode(VisionLanguageModel vlm, Sample s) {
        List<Map<String, Object>> msgs = s.messages();
        int last = msgs.size() - 1;
        if (!"assistant".equals(msgs.get(last).get("role")))
            throw new IllegalArgumentException("the last message of a training sample must be the assistant's, got " + msgs.get(last).get("role"));
        if (!(msgs.get(last).get("content") instanceof String answer))
            throw new IllegalArgumentException("the assistant message must be text");
        ChatMessages.Prepared prep = ChatMessages.prepare(msgs.subList(0, last), s.images(), s.videos());
        String promptText = vlm.template().render(prep.messages(), Map.of("add_generation_prompt", true));
        String full = promptText + answer + "<|im_end|>\n";
        VisionLanguageModel.Prompt prompt = vlm.tokenizePrompt(promptText, prep.media(), null, null, baseDir);
        VisionLanguageModel.Prompt train = vlm.tokenizePrompt(full, prep.media(), null, null, baseDir);
        int[] ids = train.ids(), pids = prompt.ids();
        for (int i = 0; i < pids.length; i++)
            if (i >= ids.length || ids[i] != pids[i])
                throw new IllegalStateException("the training sequence does not start with the prompt's tokens (index " + i + ")");
        long[] labels = new long[ids.length];
        for (int i = 0; i < ids.length; i++) labels[i] = i < pids.length ? -100 : ids[i];
        return new Example(ids, labels, train.images(), train.videos(), promptText, answer);
    }
}
