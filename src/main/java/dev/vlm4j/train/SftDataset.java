package dev.vlm4j.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.api.ChatMessages;
import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.model.Qwen25VLModel;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import java.util.function.Consumer;

/**
 * An ms-swift JSONL dataset: one sample a line, {@code {"messages": [...], "images": [...], "videos": [...]}}, with
 * {@code <image>} / {@code <video>} tags in the message text filled from the lists in order (relative media paths
 * resolve against the file's folder). Rows in the query/response form ({@code system}, {@code history} as
 * {@code [[query, response], ...]}, {@code query}, {@code response}) are converted to messages.
 * {@code PATH#N} samples N rows with the data seed, repeating the whole file when N exceeds its size (ms-swift).
 * Malformed rows are skipped and counted (non-strict, ms-swift's default) or fail the load naming file and line
 * ({@code strict}).
 */
public final class SftDataset {
    /** One raw sample, with where it came from ({@code file:line}) and the folder its media paths resolve against. */
    public record Sample(List<Map<String, Object>> messages, List<Object> images, List<Object> videos, String source, Path baseDir) {
        public Sample(List<Map<String, Object>> messages, List<Object> images, List<Object> videos) {
            this(messages, images, videos, "<memory>", null);
        }
    }

    /**
     * A tokenized sample: ids, labels (-100 outside assistant turns), media inputs, the text before the last assistant
     * answer, that answer, and {@code promptLength} (tokens before the last answer).
     */
    public record Example(int[] ids, long[] labels, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos,
                          String promptText, String answer, int promptLength, String source) {
        /** Tokens the loss counts (labels[t + 1] for t < length - 1 that are not -100). */
        public int lossTokens() {
            int c = 0;
            for (int t = 1; t < labels.length; t++) if (labels[t] != -100) c++;
            return c;
        }
    }

    private static final ObjectMapper JSON = new ObjectMapper();
    private static final Set<String> ROLES = Set.of("system", "user", "assistant", "tool");
    private final List<Sample> samples;
    private final int skipped;

    private SftDataset(List<Sample> samples, int skipped) {
        this.samples = samples;
        this.skipped = skipped;
    }

    public List<Sample> samples() { return samples; }

    /** Malformed rows skipped while loading (non-strict). */
    public int skipped() { return skipped; }

    /** Loads and concatenates several {@code PATH[#N]} specs, strictly (any malformed row fails), seed 42. */
    public static SftDataset load(List<String> specs) { return load(specs, true, 42, s -> {}); }

    /** Loads {@code PATH} or {@code PATH#N}, strictly. */
    public static SftDataset load(String spec) { return load(List.of(spec)); }

    /** Loads and concatenates several {@code PATH[#N]} specs; skipped rows are reported to {@code log}. */
    public static SftDataset load(List<String> specs, boolean strict, long seed, Consumer<String> log) {
        List<Sample> all = new ArrayList<>();
        int skipped = 0;
        for (String spec : specs) {
            int hash = spec.lastIndexOf('#');
            int n = -1;
            String path = spec;
            if (hash > 0 && spec.substring(hash + 1).matches("\\d+")) {
                n = Integer.parseInt(spec.substring(hash + 1));
                path = spec.substring(0, hash);
            }
            Path file = Path.of(path).toAbsolutePath().normalize();
            if (!Files.isRegularFile(file)) throw new IllegalArgumentException("dataset " + file + " not found");
            List<Sample> rows = new ArrayList<>();
            List<String> lines;
            try {
                lines = Files.readAllLines(file);
            } catch (IOException e) {
                throw new IllegalArgumentException("cannot read " + file + ": " + e.getMessage());
            }
            int bad = 0;
            for (int i = 0; i < lines.size(); i++) {
                if (lines.get(i).isBlank()) continue;
                String where = file + ":" + (i + 1);
                try {
                    rows.add(parseRow(lines.get(i), where, file.getParent()));
                } catch (IllegalArgumentException e) {
                    if (strict) throw new IllegalArgumentException(e.getMessage() + " (pass --strict false to skip malformed rows)");
                    bad++;
                    log.accept("skipping malformed row " + e.getMessage());
                }
            }
            if (bad > 0) log.accept("dataset " + file + ": skipped " + bad + " malformed row(s) of " + (bad + rows.size()));
            skipped += bad;
            if (rows.isEmpty()) throw new IllegalArgumentException("dataset " + file + " holds no usable samples");
            all.addAll(n >= 0 ? sample(rows, n, seed) : rows);
        }
        return new SftDataset(all, skipped);
    }

    /** {@code n} rows: whole copies of the list while n exceeds its size, then a seeded random subset of the rest. */
    static List<Sample> sample(List<Sample> rows, int n, long seed) {
        List<Sample> out = new ArrayList<>();
        for (int k = 0; k < n / rows.size(); k++) out.addAll(rows);
        List<Integer> perm = new ArrayList<>();
        for (int i = 0; i < rows.size(); i++) perm.add(i);
        Collections.shuffle(perm, new Random(seed));
        for (int i = 0; i < n % rows.size(); i++) out.add(rows.get(perm.get(i)));
        return out;
    }

    /**
     * Splits off a validation part of {@code ceil(ratio * size)} samples (at least one, and at least one left to
     * train on), chosen with a seeded shuffle; returns {@code [train, validation]}.
     */
    public List<SftDataset> split(double ratio, long seed) {
        int nVal = (int) Math.ceil(ratio * samples.size());
        if (nVal < 1 || nVal >= samples.size())
            throw new IllegalArgumentException("--split_dataset_ratio " + ratio + " of " + samples.size() + " samples leaves "
                    + nVal + " for validation and " + (samples.size() - nVal) + " for training");
        List<Integer> perm = new ArrayList<>();
        for (int i = 0; i < samples.size(); i++) perm.add(i);
        Collections.shuffle(perm, new Random(seed));
        Set<Integer> val = new TreeSet<>(perm.subList(0, nVal));
        List<Sample> tr = new ArrayList<>(), va = new ArrayList<>();
        for (int i = 0; i < samples.size(); i++) (val.contains(i) ? va : tr).add(samples.get(i));
        return List.of(new SftDataset(tr, skipped), new SftDataset(va, 0));
    }

    @SuppressWarnings("unchecked")
    static Sample parseRow(String line, String where, Path baseDir) {
        Map<String, Object> row;
        try {
            row = JSON.readValue(line, Map.class);
        } catch (IOException e) {
            throw new IllegalArgumentException(where + ": not valid JSON: " + (e instanceof com.fasterxml.jackson.core.JsonProcessingException j ? j.getOriginalMessage() : e.getMessage()));
        }
        List<Map<String, Object>> msgs = new ArrayList<>();
        Object m = row.get("messages");
        if (m != null) {
            if (!(m instanceof List<?> l) || l.isEmpty()) throw new IllegalArgumentException(where + ": \"messages\" is not a non-empty list");
            for (Object o : l) {
                if (!(o instanceof Map<?, ?> mm)) throw new IllegalArgumentException(where + ": a message is not an object");
                msgs.add((Map<String, Object>) mm);
            }
        } else if (row.containsKey("query") || row.containsKey("response")) {
            if (row.get("system") instanceof String s) msgs.add(msg("system", s));
            if (row.get("history") instanceof List<?> h) for (Object turn : h) {
                if (!(turn instanceof List<?> qr) || qr.size() != 2 || !(qr.get(0) instanceof String q) || !(qr.get(1) instanceof String r))
                    throw new IllegalArgumentException(where + ": \"history\" entries must be [query, response] string pairs");
                msgs.add(msg("user", q));
                msgs.add(msg("assistant", r));
            } else if (row.get("history") != null) throw new IllegalArgumentException(where + ": \"history\" is not a list");
            if (!(row.get("query") instanceof String q)) throw new IllegalArgumentException(where + ": \"query\" is missing or not text");
            if (!(row.get("response") instanceof String r)) throw new IllegalArgumentException(where + ": \"response\" is missing or not text");
            msgs.add(msg("user", q));
            msgs.add(msg("assistant", r));
        } else {
            throw new IllegalArgumentException(where + ": no \"messages\" list (nor query/response)");
        }
        for (int i = 0; i < msgs.size(); i++) {
            Object role = msgs.get(i).get("role");
            if (!(role instanceof String r) || !ROLES.contains(r))
                throw new IllegalArgumentException(where + ": message " + i + " has role " + role + " (expected system, user, assistant or tool)");
            if (r.equals("assistant") && !(msgs.get(i).get("content") instanceof String))
                throw new IllegalArgumentException(where + ": assistant message " + i + " has no text content");
        }
        if (!"assistant".equals(msgs.getLast().get("role")))
            throw new IllegalArgumentException(where + ": the last message must be the assistant's, got " + msgs.getLast().get("role"));
        return new Sample(msgs, list(row.get("images")), list(row.get("videos")), where, baseDir);
    }

    private static Map<String, Object> msg(String role, String content) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("role", role);
        m.put("content", content);
        return m;
    }

    private static List<Object> list(Object o) {
        if (o == null) return List.of();
        if (o instanceof List<?> l) return new ArrayList<>(l);
        return List.of(o);
    }

    /**
     * Tokenizes a sample with labels on every assistant turn: each answer and its {@code <|im_end|>\n} (as rendered
     * by the chat template) is trained; system, user and vision tokens get -100. The assistant spans are found by
     * rendering each conversation prefix and must be prefixes of the full rendering.
     */
    public Example encode(VisionLanguageModel vlm, Sample s) {
        ChatMessages.Prepared prep = ChatMessages.prepare(s.messages(), s.images(), s.videos());
        List<Map<String, Object>> msgs = prep.messages();
        var tpl = vlm.template();
        String full = tpl.render(msgs, Map.of("add_generation_prompt", false));
        List<int[]> charSpans = new ArrayList<>();
        String lastPrompt = null;
        for (int k = 0; k < msgs.size(); k++) {
            if (!"assistant".equals(msgs.get(k).get("role"))) continue;
            String before = tpl.render(msgs.subList(0, k), Map.of("add_generation_prompt", true));
            String through = tpl.render(msgs.subList(0, k + 1), Map.of("add_generation_prompt", false));
            if (!full.startsWith(before) || !full.startsWith(through) || !through.startsWith(before))
                throw new IllegalArgumentException(s.source() + ": the chat template renders assistant turn " + k
                        + " differently inside the conversation; cannot place its labels");
            charSpans.add(new int[]{before.length(), through.length()});
            lastPrompt = before;
        }
        VisionLanguageModel.Prompt train = vlm.tokenizePrompt(full, prep.media(), null, null, s.baseDir());
        int[] raw = vlm.tokenizer().encode(full), ids = train.ids();
        int imageTok = vlm.model().config().imageTokenId(), videoTok = vlm.model().config().videoTokenId();
        int[] toExpanded = new int[raw.length + 1];
        int p = 0;
        for (int j = 0; j < raw.length; j++) {
            toExpanded[j] = p;
            if (raw[j] == imageTok || raw[j] == videoTok) while (p < ids.length && ids[p] == raw[j]) p++;
            else p++;
        }
        toExpanded[raw.length] = p;
        if (p != ids.length) throw new IllegalStateException(s.source() + ": token mapping mismatch (" + p + " vs " + ids.length + ")");
        long[] labels = new long[ids.length];
        Arrays.fill(labels, -100);
        int promptLength = 0;
        for (int[] cs : charSpans) {
            int from = toExpanded[rawBoundary(vlm, full, cs[0], raw, s)], to = toExpanded[rawBoundary(vlm, full, cs[1], raw, s)];
            for (int i = from; i < to; i++) if (ids[i] != imageTok && ids[i] != videoTok) labels[i] = ids[i];
            promptLength = from;
        }
        String answer = (String) s.messages().getLast().get("content");
        return new Example(ids, labels, train.images(), train.videos(), lastPrompt, answer, promptLength, s.source());
    }

    /** The number of tokens of {@code full}'s first {@code chars} characters, checked to be a prefix of its tokens. */
    private static int rawBoundary(VisionLanguageModel vlm, String full, int chars, int[] raw, Sample s) {
        if (chars == full.length()) return raw.length;
        int[] pre = vlm.tokenizer().encode(full.substring(0, chars));
        for (int i = 0; i < pre.length; i++)
            if (i >= raw.length || raw[i] != pre[i])
                throw new IllegalStateException(s.source() + ": the tokens of the conversation do not split at an assistant turn boundary (index " + i + ")");
        return pre.length;
    }

    /**
     * Applies {@code --max_length} with ms-swift's truncation strategies: {@code delete} drops a longer sample,
     * {@code left} keeps its last {@code maxLength} tokens, {@code right} its first. Returns null (with the reason in
     * {@code why}) when the sample is dropped: too long under delete, truncation would cut vision tokens, or no
     * trained token is left.
     */
    public static Example truncate(Example e, int maxLength, String strategy, int[] visionTokens, StringBuilder why) {
        int n = e.ids().length;
        if (maxLength <= 0 || n <= maxLength) return e;
        if (strategy.equals("delete")) {
            why.append(n).append(" tokens > --max_length ").append(maxLength);
            return null;
        }
        int from = strategy.equals("left") ? n - maxLength : 0, to = from + maxLength;
        for (int i = 0; i < n; i++) {
            if (i >= from && i < to) continue;
            for (int v : visionTokens) if (e.ids()[i] == v) {
                why.append(strategy).append(" truncation to ").append(maxLength).append(" tokens would cut vision tokens");
                return null;
            }
        }
        int[] ids = Arrays.copyOfRange(e.ids(), from, to);
        long[] labels = Arrays.copyOfRange(e.labels(), from, to);
        Example t = new Example(ids, labels, e.images(), e.videos(), e.promptText(), e.answer(),
                Math.max(0, Math.min(maxLength, e.promptLength() - from)), e.source());
        if (t.lossTokens() == 0) {
            why.append(strategy).append(" truncation to ").append(maxLength).append(" tokens leaves no assistant token");
            return null;
        }
        return t;
    }

    /**
     * Encodes and truncates every sample. A sample that fails to encode fails the call naming its row when
     * {@code strict}, else it is skipped; dropped samples are reported to {@code log} with a count.
     */
    public List<Example> encodeAll(VisionLanguageModel vlm, int maxLength, String strategy, boolean strict, Consumer<String> log) {
        var cfg = vlm.model().config();
        int[] vision = {cfg.imageTokenId(), cfg.videoTokenId(), cfg.visionStartTokenId(), cfg.visionEndTokenId()};
        List<Example> out = new ArrayList<>();
        int failed = 0, dropped = 0;
        for (Sample s : samples) {
            Example e;
            try {
                e = encode(vlm, s);
            } catch (RuntimeException ex) {
                String msg = ex.getMessage() != null && ex.getMessage().contains(s.source()) ? ex.getMessage() : s.source() + ": " + ex.getMessage();
                if (strict) throw new IllegalArgumentException(msg, ex);
                failed++;
                log.accept("skipping a sample that does not encode: " + msg);
                continue;
            }
            StringBuilder why = new StringBuilder();
            Example t = truncate(e, maxLength, strategy, vision, why);
            if (t == null) {
                dropped++;
                log.accept("skipping " + s.source() + ": " + why);
                continue;
            }
            out.add(t);
        }
        if (failed + dropped > 0) log.accept("skipped " + failed + " sample(s) that do not encode and " + dropped + " over --max_length, of " + samples.size());
        return out;
    }
}
