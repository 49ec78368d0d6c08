package dev.vlm4j.tensor.safetensors;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.tensor.Tensor;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import java.util.stream.Stream;

/**
 * The weights of a checkpoint folder: {@code model.safetensors}, or shards listed by
 * {@code model.safetensors.index.json}, or every {@code *.safetensors} file in the folder. All files are
 * memory-mapped; tensors are views.
 * <p>
 * Names are kept in the published (transformers 4) scheme: {@code model.layers.N...}, {@code visual...},
 * {@code lm_head.weight}. Files in the newer scheme ({@code model.language_model.*}, {@code model.visual.*})
 * are mapped onto it, so callers use one spelling.
 */
public final class Checkpoint implements AutoCloseable {
    private static final ObjectMapper JSON = new ObjectMapper();

    private final Path dir;
    private final List<SafeTensorsFile> files = new ArrayList<>();
    private final Map<String, SafeTensorsFile> byName = new LinkedHashMap<>();
    private final Map<String, String> diskName = new HashMap<>();
    private final Map<String, Tensor> overrides = new HashMap<>();

    private Checkpoint(Path dir) { this.dir = dir; }

    /** Canonical (published-layout) name of a tensor name found on disk. */
    public static String canonicalName(String n) {
        if (n.startsWith("model.language_model.")) return "model." + n.substring("model.language_model.".length());
        if (n.startsWith("model.visual.")) return n.substring("model.".length());
        return n;
    }

    public static Checkpoint open(Path dir) {
        if (!Files.isDirectory(dir)) throw CheckpointException.at(dir, "model folder not found");
        Checkpoint c = new Checkpoint(dir);
        try {
            Path index = dir.resolve("model.safetensors.index.json");
            List<Path> shards = new ArrayList<>();
            if (Files.isRegularFile(index)) {
                JsonNode root;
                try {
                    root = JSON.readTree(index.toFile());
                } catch (IOException e) {
                    throw CheckpointException.at(index, "not valid JSON: " + e.getMessage());
                }
                JsonNode map = root == null ? null : root.get("weight_map");
                if (map == null || !map.isObject()) throw CheckpointException.at(index, "has no \"weight_map\" object");
                Set<String> seen = new LinkedHashSet<>();
                map.properties().forEach(e -> seen.add(e.getValue().asText()));
                for (String s : seen) {
                    Path p = dir.resolve(s).normalize();
                    if (!p.startsWith(dir.normalize())) throw CheckpointException.at(index, "shard path '" + s + "' leaves the model folder");
                    if (!Files.isRegularFile(p))
                        throw CheckpointException.at(index, "lists shard '" + s + "' which is missing from " + dir + " (incomplete download?)");
                    shards.add(p);
                }
                for (Path p : shards) c.add(SafeTensorsFile.open(p));
                map.properties().forEach(e -> {
                    String canon = canonicalName(e.getKey());
                    if (!c.byName.containsKey(canon))
                        throw CheckpointException.at(index, "lists tensor '" + e.getKey() + "' in " + e.getValue().asText() + " but that shard does not hold it");
                });
            } else {
                Path single = dir.resolve("model.safetensors");
                if (Files.isRegularFile(single)) shards.add(single);
                else try (Stream<Path> s = Files.list(dir)) {
                    s.filter(p -> p.getFileName().toString().endsWith(".safetensors")
                                    && !p.getFileName().toString().startsWith("adapter_"))
                            .sorted().forEach(shards::add);
                }
                if (shards.isEmpty())
                    throw CheckpointException.at(dir, "no model.safetensors, model.safetensors.index.json or *.safetensors found "
                            + "(only safetensors checkpoints are supported; convert .bin files with transformers' save_pretrained)");
                for (Path p : shards) c.add(SafeTensorsFile.open(p));
            }
            return c;
        } catch (IOException e) {
            c.close();
            throw CheckpointException.at(dir, "cannot list: " + e.getMessage());
        } catch (RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private void add(SafeTensorsFile f) {
        files.add(f);
        for (String n : f.names()) {
            String canon = canonicalName(n);
            SafeTensorsFile prev = byName.put(canon, f);
            if (prev != null && prev != f)
                throw CheckpointException.at(f.path(), "tensor '" + n + "' also appears in " + prev.path().getFileName());
            if (prev == f)
                throw CheckpointException.at(f.path(), "tensor '" + n + "' and '" + diskName.get(canon)
                        + "' are the same tensor under the two name schemes");
            diskName.put(canon, n);
        }
    }

    public Path dir() { return dir; }
    public Set<String> names() { return Collections.unmodifiableSet(byName.keySet()); }
    public boolean contains(String canonicalName) { return byName.containsKey(canonicalName); }

    /** The tensor under its canonical name; throws a {@link CheckpointException} naming the folder when absent. */
    public Tensor get(String canonicalName) {
        Tensor o = overrides.get(canonicalName);
        if (o != null) return o;
        SafeTensorsFile f = byName.get(canonicalName);
        if (f == null) throw CheckpointException.at(dir, "checkpoint has no tensor '" + canonicalName + "'");
        return f.get(diskName.get(canonicalName));
    }

    /** The tensor, checked against the shape the config implies. */
    public Tensor get(String canonicalName, long... expectedShape) {
        Tensor t = get(canonicalName);
        if (!Arrays.equals(t.shape(), expectedShape))
            throw CheckpointException.at(byName.get(canonicalName).path(), "tensor '" + canonicalName + "' has shape "
                    + Arrays.toString(t.shape()) + " but config.json implies " + Arrays.toString(expectedShape));
        return t;
    }

    public Tensor getOrNull(String canonicalName, long... expectedShape) {
        return contains(canonicalName) ? get(canonicalName, expectedShape) : null;
    }

    /**
     * Replaces a stored tensor by another of the same shape for every later {@link #get} (used to apply merged
     * adapters without touching the files).
     */
    public void override(String canonicalName, Tensor t) {
        Tensor base = get(canonicalName);
        if (!Arrays.equals(base.shape(), t.shape()))
            throw new IllegalArgumentException("override of '" + canonicalName + "' has shape " + Arrays.toString(t.shape())
                    + ", stored tensor has " + Arrays.toString(base.shape()));
        overrides.put(canonicalName, t);
    }

    @Override
    public void close() {
        for (SafeTensorsFile f : files) f.close();
        files.clear();
    }
}
