package dev.vlm4j.api;

import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.generate.Generator;
import dev.vlm4j.generate.ReasoningSplit;
import dev.vlm4j.generate.SamplingOptions;
import dev.vlm4j.generate.ThinkingMode;
import dev.vlm4j.model.GenerationConfig;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.preprocess.image.*;
import dev.vlm4j.preprocess.template.ChatTemplate;
import dev.vlm4j.preprocess.tokenizer.Tokenizer;
import dev.vlm4j.preprocess.video.ProcessedVideo;
import dev.vlm4j.preprocess.video.VideoProcessor;
import dev.vlm4j.tensor.Tensor;

import java.nio.file.Path;
import java.util.*;
import java.util.function.Consumer;

/**
 * A loaded vision-language model with everything needed to chat with it: weights, tokenizer, chat template,
 * image and video processors, generation config.
 * <pre>{@code
 * try (var vlm = VisionLanguageModel.load(Path.of("MiMo-VL-7B-RL"))) {
 *     var r = vlm.chat(List.of(Map.of("role", "user", "content", List.of(
 *             Map.of("type", "image", "image", "cat.png"),
 *             Map.of("type", "text", "text", "What is this?")))), ChatOptions.defaults());
 *     System.out.println(r.reasoning() + "\n---\n" + r.answer());
 * }
 * }</pre>
 */
public final class VisionLanguageModel implements AutoCloseable {
    private final Path dir;
    private final Qwen25VLModel model;
    private final Tokenizer tokenizer;
    private final ChatTemplate template;
    private final ImageProcessor images;
    private final VideoProcessor videos;
    private final GenerationConfig generationConfig;

    private VisionLanguageModel(Path dir, Qwen25VLModel model, Tokenizer tokenizer, ChatTemplate template,
                                ImageProcessor images, VideoProcessor videos, GenerationConfig gen) {
        this.dir = dir;
        this.model = model;
        this.tokenizer = tokenizer;
        this.template = template;
        this.images = images;
        this.videos = videos;
        this.generationConfig = gen;
    }

    /** Loads a model folder on the CPU. */
    public static VisionLanguageModel load(Path dir) { return load(dir, new CpuBackend()); }

    /** Loads a model folder onto the given backend. */
    public static VisionLanguageModel load(Path dir, Backend backend) {
        return load(dir, backend, List.of());
    }

    /** Loads a model folder with PEFT LoRA adapters (folders) merged into its weights. */
    public static VisionLanguageModel load(Path dir, Backend backend, List<Path> adapters) {
        return load(dir, backend, adapters, c -> {});
    }

    /** Same, with {@code prepare} run on the checkpoint before its weights are read (see {@link Qwen25VLModel#load}). */
    public static VisionLanguageModel load(Path dir, Backend backend, List<Path> adapters,
                                           java.util.function.Consumer<dev.vlm4j.tensor.safetensors.Checkpoint> prepare) {
        List<dev.vlm4j.model.adapter.LoraAdapter> loras = new ArrayList<>();
        for (Path a : adapters) loras.add(dev.vlm4j.model.adapter.LoraAdapter.load(a));
        Qwen25VLModel model = Qwen25VLModel.load(dir, backend, loras, prepare);
        try {
            Tokenizer tok = Tokenizer.load(dir);
            ChatTemplate tpl = ChatTemplate.load(dir).withVariables(ChatTemplate.specialTokens(dir));
            GenerationConfig gen = GenerationConfig.load(dir, tok.tokenId("<|im_end|>"));
            return new VisionLanguageModel(dir, model, tok, tpl, ImageProcessor.fromModelDir(dir), VideoProcessor.fromModelDir(dir), gen);
        } catch (RuntimeException e) {
            model.close();
            throw e;
        }
    }

    public Path directory() { return dir; }
    public Qwen25VLModel model() { return model; }
    public Tokenizer tokenizer() { return tokenizer; }
    public ChatTemplate template() { return template; }
    public ImageProcessor imageProcessor() { return images; }
    public VideoProcessor videoProcessor() { return videos; }
    public GenerationConfig generationConfig() { return generationConfig; }

    /** A prompt ready for the model: token ids (placeholders expanded) and the processed media. */
    public record Prompt(String text, int[] ids, Qwen25VLModel.VisionInput images, Qwen25VLModel.VisionInput videos) {}

    /** Renders the chat template (with a generation prompt), tokenizes, processes media and expands placeholders. */
    public Prompt buildPrompt(List<Map<String, Object>> messages, ChatOptions opts) {
        return buildPrompt(messages, List.of(), List.of(), opts);
    }

    /**
     * Same, for ms-swift rows: {@code <image>} / {@code <video>} tags in the message text are filled from
     * {@code images} / {@code videos} in order.
     */
    public Prompt buildPrompt(List<Map<String, Object>> messages, List<?> imageList, List<?> videoList, ChatOptions opts) {
        ChatMessages.Prepared prep = ChatMessages.prepare(messages, imageList, videoList);
        List<Map<String, Object>> msgs = prep.messages();
        Map<String, Object> kwargs = new LinkedHashMap<>(opts.templateKwargs());
        kwargs.putIfAbsent("add_generation_prompt", true);
        if (!opts.enableThinking()) {
            msgs = ChatMessages.withThinkingOff(msgs, ThinkingMode.NO_THINK);
            kwargs.putIfAbsent("enable_thinking", false);
        }
        String text = template.render(msgs, kwargs);
        return tokenizePrompt(text, prep.media(), opts.minPixels(), opts.maxPixels(), null);
    }

    /**
     * Tokenizes an already rendered prompt and processes its media (images in order, then videos in order);
     * {@code baseDir} resolves relative media paths (null: the working directory).
     */
    public Prompt tokenizePrompt(String text, List<ChatMessages.Media> media, Long minPixels, Long maxPixels, Path baseDir) {
        List<ProcessedImage> imgs = new ArrayList<>();
        List<ProcessedVideo> vids = new ArrayList<>();
        for (ChatMessages.Media m : media) {
            if (m.source() == null) throw new IllegalArgumentException((m.video() ? "a video" : "an image") + " part has no source");
            if (!m.video()) {
                imgs.add(images.process(loadImage(m.source(), baseDir), minPixels, maxPixels));
            } else {
                vids.add(loadVideo(m, baseDir));
            }
        }
        int[] raw = tokenizer.encode(text);
        int merge = model.config().vision().spatialMergeSize();
        List<int[]> ig = new ArrayList<>();
        for (ProcessedImage p : imgs) ig.add(p.gridThw());
        List<int[]> vg = new ArrayList<>();
        List<Double> spg = new ArrayList<>();
        for (ProcessedVideo v : vids) {
            vg.add(v.gridThw());
            spg.add(v.secondPerGridT());
        }
        int[] ids = expandPlaceholders(raw, model.config().imageTokenId(), ig, merge, "image");
        ids = expandPlaceholders(ids, model.config().videoTokenId(), vg, merge, "video");
        Qwen25VLModel.VisionInput iv = imgs.isEmpty() ? null : new Qwen25VLModel.VisionInput(ProcessedImages.concat(imgs).pixelValues(), ig, null, false);
        Qwen25VLModel.VisionInput vv = vids.isEmpty() ? null : new Qwen25VLModel.VisionInput(concatRows(vids), vg, spg, true);
        return new Prompt(text, ids, iv, vv);
    }

    private static Tensor concatRows(List<ProcessedVideo> vids) {
        if (vids.size() == 1) return vids.get(0).pixelValues();
        long rows = 0, cols = vids.get(0).pixelValues().dim(1);
        for (ProcessedVideo v : vids) rows += v.pixelValues().dim(0);
        float[] all = new float[Math.toIntExact(rows * cols)];
        int off = 0;
        for (ProcessedVideo v : vids) {
            float[] a = v.pixelValues().toFloatArray();
            System.arraycopy(a, 0, all, off, a.length);
            off += a.length;
        }
        return Tensor.of(all, rows, cols);
    }

    private RgbImage loadImage(Object src, Path baseDir) {
        if (src instanceof byte[] b) return ImageLoader.decode(b, "image bytes");
        if (src instanceof RgbImage r) return r;
        String s = src.toString();
        if (baseDir != null && !s.contains(":")) return ImageLoader.load(baseDir.resolve(s));
        return ImageLoader.load(s);
    }

    private ProcessedVideo loadVideo(ChatMessages.Media m, Path baseDir) {
        if (m.source() instanceof List<?> frames) {
            List<Path> files = new ArrayList<>();
            for (Object f : frames) {
                String s = f.toString();
                if (s.startsWith("file://")) s = s.substring("file://".length());
                files.add(baseDir != null ? baseDir.resolve(s) : Path.of(s));
            }
            return videos.processFrameFiles(files, m.fps() == null ? 2.0 : m.fps());
        }
        String s = m.source().toString();
        if (s.startsWith("file://")) s = s.substring("file://".length());
        return videos.processFile(baseDir != null ? baseDir.resolve(s) : Path.of(s));
    }

    /** Replaces each single placeholder token by t*h*w/merge^2 copies of it, consuming grids in order. */
    public static int[] expandPlaceholders(int[] ids, int token, List<int[]> grids, int merge, String what) {
        int found = 0;
        for (int id : ids) if (id == token) found++;
        if (found != grids.size())
            throw new IllegalArgumentException("the prompt has " + found + " " + what + " placeholder(s) but " + grids.size()
                    + " " + what + "(s) were given");
        if (found == 0) return ids;
        int extra = 0;
        for (int[] g : grids) extra += g[0] * (g[1] / merge) * (g[2] / merge) - 1;
        int[] out = new int[ids.length + extra];
        int k = 0, gi = 0;
        for (int id : ids) {
            if (id == token) {
                int[] g = grids.get(gi++);
                int n = g[0] * (g[1] / merge) * (g[2] / merge);
                for (int j = 0; j < n; j++) out[k++] = token;
            } else {
                out[k++] = id;
            }
        }
        return out;
    }

    /** One chat turn; returns when generation ends. */
    public ChatResult chat(List<Map<String, Object>> messages, ChatOptions opts) {
        return chat(messages, opts, null);
    }

    /** One chat turn, streaming text pieces to {@code onText} as they are generated. */
    public ChatResult chat(List<Map<String, Object>> messages, ChatOptions opts, Consumer<String> onText) {
        Prompt p = buildPrompt(messages, opts);
        return generate(p, opts.sampling(), onText);
    }

    /** Prefills a prompt and generates from it. */
    public ChatResult generate(Prompt p, SamplingOptions sampling, Consumer<String> onText) {
        long t0 = System.nanoTime();
        Qwen25VLModel.Sequence seq = model.newSequence(p.ids().length + Math.min(sampling.maxNewTokens(), 8192));
        Tensor hidden = model.prefill(seq, p.ids(), p.images(), p.videos(), null);
        float[] logits = model.lastLogits(hidden);
        long t1 = System.nanoTime();
        Generator g = new Generator(model, tokenizer, generationConfig.eosTokenIds());
        Generator.Result r = g.generate(seq, p.ids(), logits, sampling, true, onText, null);
        // The template may open the assistant turn with "<think>\n" itself; then all output starts as reasoning.
        boolean startInReasoning = p.text().endsWith("<think>\n") || p.text().endsWith("<think>");
        ReasoningSplit split = ReasoningSplit.of(r.text(), startInReasoning);
        return new ChatResult(split.reasoning(), split.answer(), r.text(), r.tokens(), p.ids().length, r.count(),
                r.finishReason(), (t1 - t0) / 1e6, r.decodeNanos() / 1e6);
    }

    @Override
    public void close() {
        tokenizer.close();
        model.close();
    }
}
