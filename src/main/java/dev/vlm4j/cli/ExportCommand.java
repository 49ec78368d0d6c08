package dev.vlm4j.cli;

import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.model.adapter.MergeExporter;
import dev.vlm4j.train.SftArgs;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;

/** {@code vlm4j export --adapters CKPT --merge_lora true}: a full checkpoint with the LoRA merged (ms-swift's export). */
@Command(name = "export", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Merge LoRA adapters into their base model and write a full checkpoint folder in the published layout:",
                "config/tokenizer files copied, bfloat16 safetensors shards and model.safetensors.index.json."})
public final class ExportCommand implements Callable<Integer> {
    @Option(names = {"--adapters", "--adapter"}, required = true, split = ",", paramLabel = "CKPT",
            description = "PEFT LoRA adapter folder(s), e.g. output/v0-.../checkpoint-100.")
    List<Path> adapters = new ArrayList<>();

    @Option(names = "--model", paramLabel = "DIR",
            description = "Base model folder (default: the model named in the adapter's args.json, else its adapter_config.json).")
    Path model;

    @Option(names = "--merge_lora", arity = "1", paramLabel = "BOOL", defaultValue = "false",
            description = "Merge the adapters into the weights (required: true; it is the only export this build does).")
    boolean mergeLora;

    @Option(names = "--output_dir", paramLabel = "DIR", description = "Where to write (default: CKPT-merged beside the first adapter).")
    Path outputDir;

    @Option(names = "--max_shard_size", defaultValue = "5GB", paramLabel = "SIZE",
            description = "Largest shard, e.g. 5GB, 500MB, 100KB (default: ${DEFAULT-VALUE}).")
    String maxShardSize;

    @Override
    public Integer call() throws Exception {
        if (!mergeLora) throw new IllegalArgumentException("only --merge_lora true exports are supported");
        Path first = adapters.getFirst().toAbsolutePath().normalize();
        Path base = model != null ? model : baseModelOf(first);
        Path out = outputDir != null ? outputDir : first.resolveSibling(first.getFileName() + "-merged");
        List<LoraAdapter> loras = new ArrayList<>();
        for (Path a : adapters) loras.add(LoraAdapter.load(a));
        MergeExporter.export(base, loras, out, parseSize(maxShardSize));
        System.err.println("vlm4j export: merged " + adapters + " into " + base + " -> " + out);
        System.out.println(out);
        return 0;
    }

    /** The base model of an adapter: args.json's {@code model}, else adapter_config.json's base_model_name_or_path. */
    static Path baseModelOf(Path ckpt) throws Exception {
        Path args = SftArgs.argsFileOf(ckpt);
        if (args != null) {
            SftArgs a = SftArgs.read(args);
            if (a.model != null && Files.isDirectory(Path.of(a.model))) return Path.of(a.model);
        }
        Path ac = ckpt.resolve("adapter_config.json");
        if (Files.isRegularFile(ac)) {
            String b = new ObjectMapper().readTree(ac.toFile()).path("base_model_name_or_path").asText("");
            if (!b.isEmpty() && Files.isDirectory(Path.of(b))) return Path.of(b);
        }
        throw new IllegalArgumentException("cannot find the base model of " + ckpt + " (no usable args.json or base_model_name_or_path): pass --model DIR");
    }

    static long parseSize(String s) {
        String u = s.trim().toUpperCase(Locale.ROOT);
        long mul = 1;
        for (String[] suf : new String[][]{{"GB", "1000000000"}, {"MB", "1000000"}, {"KB", "1000"}, {"B", "1"}})
            if (u.endsWith(suf[0])) {
                mul = Long.parseLong(suf[1]);
                u = u.substring(0, u.length() - suf[0].length()).trim();
                break;
            }
        try {
            return (long) (Double.parseDouble(u) * mul);
        } catch (NumberFormatException e) {
            throw new IllegalArgumentException("--max_shard_size " + s + ": expected a size such as 5GB or 200MB");
        }
    }
}
