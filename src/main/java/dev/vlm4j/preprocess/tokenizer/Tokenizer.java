package dev.vlm4j.preprocess.tokenizer;

import ai.djl.huggingface.tokenizers.HuggingFaceTokenizer;
import ai.djl.huggingface.tokenizers.jni.TokenizersLibrary;
import com.fasterxml.jackson.databind.ObjectMapper;

import java.io.ByteArrayInputStream;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.FutureTask;
import java.util.concurrent.locks.ReadWriteLock;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * A Hugging Face fast tokenizer ({@code tokenizer.json}), run by the Rust {@code tokenizers} library through DJL.
 *
 * <p>Behaves like {@code AutoTokenizer} with {@code add_special_tokens=False}: {@link #encode} adds no BOS/EOS
 * or template tokens (Qwen2 has no BOS anyway), never truncates and never pads; added tokens such as
 * {@code <|im_start|>} or {@code <|image_pad|>} that appear in the text are matched whole, so a chat-template
 * rendering can be encoded as is. {@link #decode} is {@code tokenizer.decode(ids, skip_special_tokens=...)} with
 * {@code clean_up_tokenization_spaces=False} (the Qwen2 setting). For token-by-token output use
 * {@link StreamDecoder}.
 *
 * <p>Offline: the native library ships inside the DJL jar and is extracted once to the DJL cache
 * ({@code ~/.djl.ai/tokenizers}, or {@code $DJL_CACHE_DIR}). Before its first use this class sets the system
 * properties {@code ai.djl.offline=true}, {@code OPT_OUT_TRACKING=true} and {@code RUST_FLAVOR=cpu} (each only
 * when neither that property nor the same-named environment variable is set), so DJL neither probes the EC2
 * metadata service for telemetry nor tries to download a CUDA build of the library on GPU hosts.
 * DJL's log output goes to SLF4J, which this project binds to {@code slf4j-nop}, so nothing reaches stdout.
 *
 * <p>Thread safety: all methods may be called concurrently; {@link #close()} waits for calls in progress and
 * later calls fail with a {@link TokenizerException}.
 */
public final class Tokenizer implements AutoCloseable {
    /** The file a model folder must contain. */
    public static final String FILE_NAME = "tokenizer.json";

    /** A token from the {@code added_tokens} section; {@code special} ones are dropped by skip-special decoding. */
    public record AddedToken(int id, String content, boolean special) {}

    static {
        configureDjlOffline();
    }

    private final Path source;
    private final HuggingFaceTokenizer backend;
    private final Vocabulary vocab;
    private final ReadWriteLock lock = new ReentrantReadWriteLock();
    private boolean closed;

    private Tokenizer(Path source, HuggingFaceTokenizer backend, Vocabulary vocab) {
        this.source = source;
        this.backend = backend;
        this.vocab = vocab;
    }

    /**
     * Loads the tokenizer of a model folder (the folder's {@code tokenizer.json}; a path to the file itself is
     * accepted too).
     *
     * @throws TokenizerException when the file is missing or cannot be read or parsed; the message names the file
     */
    public static Tokenizer load(Path modelDir) {
        Objects.requireNonNull(modelDir, "modelDir");
        if (!Files.exists(modelDir)) {
            throw new TokenizerException("model folder not found: " + modelDir
                    + " (point --model at a Hugging Face model folder that contains " + FILE_NAME + ")");
        }
        Path file = Files.isDirectory(modelDir) ? modelDir.resolve(FILE_NAME) : modelDir;
        if (!Files.isRegularFile(file)) {
            throw new TokenizerException("tokenizer file not found: " + file + " (the model folder has no "
                    + FILE_NAME + "; download it from the model's Hugging Face repository into " + modelDir
                    + ", or point --model at a complete model folder)");
        }
        byte[] json;
        try {
            json = Files.readAllBytes(file);
        } catch (IOException e) {
            throw new TokenizerException("cannot read " + file + ": " + e.getMessage(), e);
        }
        // The id tables (our parse) and the native tokenizer (DJL) are built from the same bytes in parallel:
        // each takes about half of the load time.
        FutureTask<Vocabulary> vocabTask = new FutureTask<>(() -> Vocabulary.parse(json, new ObjectMapper()));
        Thread.ofVirtual().name("tokenizer-vocab").start(vocabTask);
        Map<String, String> options = Map.of(
                "addSpecialTokens", "false",
                "truncation", "false",
                "padding", "false",
                "withOverflowingTokens", "false");
        HuggingFaceTokenizer hf;
        try {
            hf = HuggingFaceTokenizer.newInstance(new ByteArrayInputStream(json), options);
        } catch (IOException | RuntimeException | LinkageError e) {
            awaitVocabulary(vocabTask, file);  // a parse error there names the problem more clearly
            throw new TokenizerException("cannot load " + file + " with the Hugging Face tokenizers library: "
                    + firstLine(e), e);
        }
        try {
            return new Tokenizer(file, hf, awaitVocabulary(vocabTask, file));
        } catch (RuntimeException e) {
            hf.close();
            throw e;
        }
    }

    private static Vocabulary awaitVocabulary(FutureTask<Vocabulary> task, Path file) {
        try {
            return task.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new TokenizerException("interrupted while loading " + file, e);
        } catch (ExecutionException e) {
            throw new TokenizerException("not a valid Hugging Face " + FILE_NAME + ": " + file + ": "
                    + firstLine(e.getCause()) + " (re-download it from the model's repository)", e.getCause());
        }
    }

    /** The {@code tokenizer.json} this tokenizer was loaded from. */
    public Path source() {
        return source;
    }

    /**
     * Encodes text to token ids, adding no special tokens and never truncating. Added tokens written in the text
     * (e.g. {@code <|vision_start|><|image_pad|><|vision_end|>}) become their single ids.
     */
    public int[] encode(String text) {
        Objects.requireNonNull(text, "text");
        lock.readLock().lock();
        try {
            ensureOpen();
            // Straight to the JNI entry point rather than HuggingFaceTokenizer.encode, which also copies out
            // token strings, offsets, masks and word ids for every token (about 1.5x slower on long texts).
            // Identical ids: with our options DJL's own text preprocessing (lower-casing etc.) is a no-op.
            long encoding = TokenizersLibrary.LIB.encode(backend.getHandle(), text, false);
            try {
                return toInts(TokenizersLibrary.LIB.getTokenIds(encoding));
            } finally {
                TokenizersLibrary.LIB.deleteEncoding(encoding);
            }
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * Decodes token ids to text. Byte-level pieces that do not form complete UTF-8 characters decode to U+FFFD,
     * as in Hugging Face.
     *
     * @param skipSpecial drop special added tokens (e.g. {@code <|im_end|>}) from the text
     */
    public String decode(int[] ids, boolean skipSpecial) {
        return decode(ids, 0, ids.length, skipSpecial);
    }

    /** Decodes {@code ids[from, to)}; see {@link #decode(int[], boolean)}. */
    public String decode(int[] ids, int from, int to, boolean skipSpecial) {
        Objects.checkFromToIndex(from, to, ids.length);
        if (from == to) return "";
        long[] longs = new long[to - from];
        for (int i = from; i < to; i++) longs[i - from] = ids[i];
        lock.readLock().lock();
        try {
            ensureOpen();
            return backend.decode(longs, skipSpecial);
        } finally {
            lock.readLock().unlock();
        }
    }

    /**
     * The id of a token given as its vocabulary string (byte-level spelling, e.g. {@code "Ġworld"}) or as an
     * added token (e.g. {@code "<|image_pad|>"}), or -1 when the vocabulary has no such token.
     */
    public int tokenId(String token) {
        return vocab.id(Objects.requireNonNull(token, "token"));
    }

    /**
     * Like {@link #tokenId(String)} but fails with a message naming the token and the file when it is unknown;
     * for tokens a model needs, such as {@code <|image_pad|>}.
     */
    public int requireTokenId(String token) {
        int id = tokenId(token);
        if (id < 0) throw new TokenizerException("token " + token + " is not in the vocabulary of " + source);
        return id;
    }

    /**
     * The vocabulary string of a token id ({@code convert_ids_to_tokens}: raw byte-level spelling, e.g.
     * {@code "Ġworld"}; use {@link #decode} for text), or {@code null} when no token has this id.
     */
    public String tokenText(int id) {
        return vocab.token(id);
    }

    /**
     * The number of token ids: one more than the highest id of the model vocabulary and the added tokens
     * ({@code len(tokenizer)} in Hugging Face: 151669 for Qwen2.5-VL, 151643 BPE entries + 26 added tokens). A model's embedding table may be larger.
     */
    public int vocabSize() {
        return vocab.size();
    }

    /** All tokens of the {@code added_tokens} section, special or not, in id order. */
    public List<AddedToken> addedTokens() {
        return vocab.addedTokens();
    }

    /** The special added tokens (e.g. {@code <|im_start|>} → 151644), content to id, in id order. */
    public Map<String, Integer> specialTokens() {
        Map<String, Integer> out = new LinkedHashMap<>();
        for (AddedToken t : vocab.addedTokens()) if (t.special()) out.put(t.content(), t.id());
        return Collections.unmodifiableMap(out);
    }

    /** Whether this id is a special added token (one that {@code skipSpecial} decoding drops). */
    public boolean isSpecial(int id) {
        return vocab.isSpecial(id);
    }

    /** Frees the native tokenizer; waits for calls in progress. Idempotent. */
    @Override
    public void close() {
        lock.writeLock().lock();
        try {
            if (!closed) {
                closed = true;
                backend.close();
            }
        } finally {
            lock.writeLock().unlock();
        }
    }

    @Override
    public String toString() {
        return "Tokenizer[" + source + ", " + vocabSize() + " ids]";
    }

    private void ensureOpen() {
        if (closed) throw new TokenizerException("tokenizer " + source + " is closed");
    }

    private static int[] toInts(long[] ids) {
        int[] out = new int[ids.length];
        for (int i = 0; i < ids.length; i++) out[i] = Math.toIntExact(ids[i]);
        return out;
    }

    private static String firstLine(Throwable e) {
        Throwable t = e;
        while (t.getMessage() == null && t.getCause() != null) t = t.getCause();
        String m = t.getMessage() == null ? t.toString() : t.getMessage();
        int nl = m.indexOf('\n');
        return nl < 0 ? m : m.substring(0, nl);
    }

    /**
     * Keeps DJL off the network (telemetry probe, CUDA library download); see the class comment. Runs once,
     * before DJL's native loader, and leaves any explicit user setting alone.
     */
    private static void configureDjlOffline() {
        setDefault("ai.djl.offline", "DJL_OFFLINE", "true");
        setDefault("OPT_OUT_TRACKING", "OPT_OUT_TRACKING", "true");
        setDefault("RUST_FLAVOR", "RUST_FLAVOR", "cpu");
    }

    private static void setDefault(String property, String envVar, String value) {
        if (System.getProperty(property) == null && System.getenv(envVar) == null) System.setProperty(property, value);
    }
}
