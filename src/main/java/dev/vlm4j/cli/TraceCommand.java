package dev.vlm4j.cli;

import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;
import dev.vlm4j.trace.FixtureCase;
import dev.vlm4j.trace.Tracer;
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
                "pixel values, vision taps, hidden states, logits, greedy generated_ids and train_loss as safetensors",
                "under the names of shared/fixtures, to compare side by side with transformers."})
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
        model.adapters = adapters;
        try (VisionLanguageModel vlm = model.load()) {
            Map<String, Tensor> t = new Tracer(vlm).trace(c);
            SafeTensorsWriter.write(out, t, Map.of("format", "pt", "producer", "vlm4j trace"));
            System.err.println("vlm4j trace: wrote " + t.size() + " tensors to " + out);
        }
        return 0;
    }
}
