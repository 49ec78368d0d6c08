package dev.vlm4j.cli;

import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.cpu.Parallel;
import picocli.CommandLine.Option;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/** Options shared by every command that loads a model: where it is, where it runs, adapters. */
public final class ModelOptions {
    @Option(names = "--model", paramLabel = "DIR|ORG/NAME",
            description = "Model folder (config.json, *.safetensors, tokenizer.json, chat template), or a hub id "
                    + "(found in the Hugging Face cache, else downloaded unless HF_HUB_OFFLINE=1). Required, except where "
                    + "a command can take it from an adapter run's args.json (infer --load_data_args).")
    Path model;

    @Option(names = "--device", defaultValue = "cpu", paramLabel = "DEV",
            description = "cpu (default) or cuda[:N] (NVIDIA GPU through the CUDA driver, cuBLASLt and NVRTC).")
    String device;

    @Option(names = {"--adapters", "--adapter"}, paramLabel = "DIR", split = ",",
            description = "PEFT LoRA adapter folder(s) to apply (ms-swift's --adapters).")
    List<Path> adapters = new ArrayList<>();

    @Option(names = "--quant", paramLabel = "MODE",
            description = "Weights: CPU bf16 (as stored, default), f32, q8_0, q4_0 (quantized at load); CUDA bf16 (default) or f32.")
    String quant;

    @Option(names = "--threads", paramLabel = "N", description = "CPU worker threads (default: all cores).")
    Integer threads;

    /** Loads the model, failing with one clear message when the folder is missing or the device unavailable. */
    VisionLanguageModel load() {
        Path dir = resolveModelDir();
        if (threads != null) Parallel.setThreads(threads);
        return VisionLanguageModel.load(dir, backend(), adapters);
    }

    /** The model folder: {@link #model} itself, or for a hub id (ORG/NAME) its snapshot in the Hugging Face cache. */
    Path resolveModelDir() {
        if (model == null) throw new IllegalArgumentException("Missing required option: '--model=DIR|ORG/NAME'");
        if (Files.isDirectory(model)) return model;
        String s = model.toString();
        if (HubId.looksLikeHubId(s)) return HubId.resolve(s);
        throw new IllegalArgumentException("model folder " + model + " not found (pass --model DIR with config.json and *.safetensors, or a hub id ORG/NAME)");
    }

    Backend backend() {
        return dev.vlm4j.compute.Backends.create(device, quant, threads == null ? 0 : threads);
    }
}
