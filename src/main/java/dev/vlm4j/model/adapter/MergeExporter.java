package dev.vlm4j.model.adapter;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.SerializationFeature;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.Device;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.Checkpoint;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.nio.file.*;
import java.util.*;
import java.util.stream.Stream;

/**
 * Writes a base model with LoRA adapters merged in as a full checkpoint folder in the published layout
 * ({@code swift export --merge_lora true}): every non-weight file of the base folder copied, the weights as bfloat16
 * safetensors shards {@code model-0000i-of-0000n.safetensors} (published tensor names) with
 * {@code model.safetensors.index.json}. Merged weights are computed in float32 ({@link LoraAdapter#mergeInto}) and
 * rounded to bfloat16 to nearest, ties to even. The folder is assembled under a temporary name and renamed at the end.
 */
public final class MergeExporter {
    private MergeExporter() {}

    /** Default shard size, as transformers' save_pretrained ("5GB"). */
    public static final long DEFAULT_SHARD_BYTES = 5_000_000_000L;

    /** float32 to bfloat16 bits, round to nearest even (NaN stays a quiet NaN). */
    public static short toBf16(float f) {
        int b = Float.floatToRawIntBits(f);
        if (Float.isNaN(f)) return (short) ((b >>> 16) | 0x40);
        b += 0x7FFF + ((b >>> 16) & 1);
        return (short) (b >>> 16);
    }

    /** A bfloat16 copy of a tensor (tensors already bfloat16 are returned as they are). */
    public static Tensor bf16(Tensor t) {
        if (t.dtype() == DType.BF16) return t;
        float[] f = t.toFloatArray();
        byte[] out = new byte[f.length * 2];
        for (int i = 0; i < f.length; i++) {
            short s = toBf16(f[i]);
            out[2 * i] = (byte) s;
            out[2 * i + 1] = (byte) (s >>> 8);
        }
        return new Tensor(DType.BF16, t.shape(), MemorySegment.ofArray(out), Device.CPU);
    }

    /** Merges {@code adapters} into the model at {@code base} and writes the result to {@code out} (which must not exist). */
    public static void export(Path base, List<LoraAdapter> adapters, Path out, long maxShardBytes) throws IOException {
        if (Files.exists(out)) throw new IllegalArgumentException("output folder " + out + " already exists");
        Path parent = out.toAbsolutePath().getParent();
        Files.createDirectories(parent);
        Path tmp = Files.createTempDirectory(parent, "." + out.getFileName() + ".tmp");
        try (Checkpoint ck = Checkpoint.open(base)) {
            for (LoraAdapter a : adapters) a.mergeInto(ck);
            copyNonWeightFiles(base, tmp);
            Map<String, Tensor> all = new LinkedHashMap<>();
            for (String name : ck.names()) all.put(name, bf16(ck.get(name)));
            writeShards(tmp, all, maxShardBytes);
        } catch (IOException | RuntimeException e) {
            deleteTree(tmp);
            throw e;
        }
        Files.move(tmp, out, StandardCopyOption.ATOMIC_MOVE);
    }

    /** Copies every regular file of {@code base} but the weights ({@code *.safetensors} and their index) into {@code dir}. */
    public static void copyNonWeightFiles(Path base, Path dir) throws IOException {
        try (Stream<Path> s = Files.list(base)) {
            for (Path p : s.toList()) {
                String n = p.getFileName().toString();
                if (!Files.isRegularFile(p) || n.endsWith(".safetensors") || n.equals("model.safetensors.index.json")) continue;
                Files.copy(p, dir.resolve(n), StandardCopyOption.COPY_ATTRIBUTES, StandardCopyOption.REPLACE_EXISTING);
            }
        }
    }

    /**
     * Writes tensors (in the given order and dtypes) as {@code model-0000i-of-0000n.safetensors} shards of at most
     * {@code maxShardBytes} (a larger tensor gets a shard of its own) and {@code model.safetensors.index.json}.
     */
    public static void writeShards(Path dir, Map<String, Tensor> tensors, long maxShardBytes) throws IOException {
        List<Map<String, Tensor>> shards = new ArrayList<>();
        Map<String, Tensor> cur = new LinkedHashMap<>();
        long curBytes = 0, total = 0;
        for (var e : tensors.entrySet()) {
            long bytes = e.getValue().numel() * e.getValue().dtype().bytes;
            if (!cur.isEmpty() && curBytes + bytes > maxShardBytes) {
                shards.add(cur);
                cur = new LinkedHashMap<>();
                curBytes = 0;
            }
            cur.put(e.getKey(), e.getValue());
            curBytes += bytes;
            total += bytes;
        }
        if (!cur.isEmpty()) shards.add(cur);
        Map<String, String> weightMap = new TreeMap<>();
        for (int i = 0; i < shards.size(); i++) {
            String file = String.format(Locale.ROOT, "model-%05d-of-%05d.safetensors", i + 1, shards.size());
            SafeTensorsWriter.write(dir.resolve(file), shards.get(i), Map.of("format", "pt"));
            for (String n : shards.get(i).keySet()) weightMap.put(n, file);
        }
        Map<String, Object> index = new LinkedHashMap<>();
        index.put("metadata", Map.of("total_size", total));
        index.put("weight_map", weightMap);
        Path idx = dir.resolve("model.safetensors.index.json"), tmp = dir.resolve("model.safetensors.index.json.tmp");
        Files.write(tmp, new ObjectMapper().enable(SerializationFeature.INDENT_OUTPUT).writeValueAsBytes(index));
        Files.move(tmp, idx, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static void deleteTree(Path p) throws IOException {
        try (Stream<Path> s = Files.walk(p)) {
            for (Path q : s.sorted(Comparator.reverseOrder()).toList()) Files.deleteIfExists(q);
        }
    }
}
