package dev.vlm4j.cli;

import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;
import dev.vlm4j.trace.FixtureCase;
import dev.vlm4j.trace.Tracer;
import dev.vlm4j.model.adapter.LoraAdapter;
import dev.vlm4j.train.TrainableModel;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;

/** {@code vlm4j trace}: runs one fixture-format case and writes every intermediate tensor under the fixture's names. */
@Command(name = "trace", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Run one fixture-format case and write every tensor computed, for parity checks.",
                "Reads case.json (messages, images, videos, answer, adapter) and writes input_ids, position_ids,",
                "pixel values, vision taps, hidden states, logits, greedy generated_ids, train_loss and, with an",
                "answer, the gradients grad.<parameter> as safetensors under the names of shared/fixtures, to compare",
                "side by side with transformers and peft. Adapters (--adapter) apply unmerged."})
public final class TraceCommand implements Callable<Integer> {
    @Mixin ModelOptions model;

    @Option(names = "--case", required = true, paramLabel = "CASEDIR", description = "Folder holding case.json.")
    Path caseDir;

    @Option(names = "--out", required = true, paramLabel = "FILE", description = "Output .safetensors file.")
    Path out;

    @Override
    public Integer call() throws Exception {
        FixtureCase c = FixtureCase.load(caseDir);
        List<Path> adapters = new ArrayList<>(model.adapters);
        if (c.adapter() != null && adapters.isEmpty()) adapters.add(c.adapter());
        if (model.threads != null) dev.vlm4j.compute.cpu.Parallel.setThreads(model.threads);
        if (model.model == null || !java.nio.file.Files.isDirectory(model.model))
            throw new IllegalArgumentException("model folder " + model.model + " not found (pass --model DIR with config.json and *.safetensors)");
        // The training stack: adapters apply unmerged (LoRA decorator); gradients of the LoRA factors when there are
        // adapters, of every weight otherwise (computed only for cases with an answer).
        List<LoraAdapter> loras = new ArrayList<>();
        for (Path a : adapters) loras.add(LoraAdapter.load(a));
        try (TrainableModel tm = TrainableModel.loadWithAdapters(model.model, model.backend(), loras, true)) {
            if (adapters.isEmpty()) tm.trainAll();
            Map<String, Tensor> t = new Tracer(tm).trace(c);
            SafeTensorsWriter.write(out, t, Map.of("format", "pt", "producer", "vlm4j trace"));
            System.err.println("vlm4j trace: wrote " + t.size() + " tensors to " + out);
        }
        return 0;
    }
}
