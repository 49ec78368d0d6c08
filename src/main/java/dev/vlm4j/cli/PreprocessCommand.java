package dev.vlm4j.cli;

import dev.vlm4j.preprocess.image.ImageLoader;
import dev.vlm4j.preprocess.image.ImageProcessor;
import dev.vlm4j.preprocess.image.ProcessedImage;
import dev.vlm4j.preprocess.image.RgbImage;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsWriter;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.Callable;

/**
 * {@code vlm4j preprocess}: runs the model's image processor on one image and writes {@code pixel_values} (F32)
 * and {@code image_grid_thw} (I64 {@code [1,3]}) to a safetensors file, for inspection or comparison with
 * transformers.
 */
@Command(name = "preprocess", mixinStandardHelpOptions = true,
        description = "Preprocess an image as the model's image processor does; write pixel_values and image_grid_thw.")
public final class PreprocessCommand implements Callable<Integer> {
    @Spec
    CommandSpec spec;

    @Option(names = "--model", required = true, paramLabel = "DIR",
            description = "Model folder (preprocessor_config.json or processor_config.json).")
    Path model;

    @Option(names = "--image", required = true, paramLabel = "FILE",
            description = "Image file, file:// URI or data: URI (PNG, JPEG, BMP, GIF, WebP).")
    String image;

    @Option(names = "--min-pixels", paramLabel = "N", description = "Override min_pixels.")
    Long minPixels;

    @Option(names = "--max-pixels", paramLabel = "N", description = "Override max_pixels.")
    Long maxPixels;

    @Option(names = "--max-tokens", paramLabel = "N", defaultValue = "0",
            description = "Fail when the image needs more merged tokens than this (0: no limit).")
    long maxTokens;

    @Option(names = "--out", required = true, paramLabel = "FILE.safetensors", description = "Output file.")
    Path out;

    @Override
    public Integer call() throws Exception {
        if (!Files.isDirectory(model)) throw new IllegalArgumentException("model folder not found: " + model);
        ImageProcessor proc = ImageProcessor.fromModelDir(model).withMaxTokens(maxTokens);
        RgbImage img = ImageLoader.load(image);
        ProcessedImage p = proc.process(img, minPixels, maxPixels);
        Map<String, Tensor> tensors = new LinkedHashMap<>();
        tensors.put("pixel_values", p.pixelValues());
        tensors.put("image_grid_thw", p.gridTensor());
        SafeTensorsWriter.write(out, tensors, Map.of("format", "pt"));
        int[] g = p.gridThw();
        spec.commandLine().getOut().printf("%s: %dx%d -> %dx%d, grid_thw [%d, %d, %d], pixel_values [%d, %d], %d tokens -> %s%n",
                image.length() > 80 ? image.substring(0, 60) + "..." : image, img.width(), img.height(),
                g[2] * proc.config().patchSize(), g[1] * proc.config().patchSize(), g[0], g[1], g[2],
                p.pixelValues().dim(0), p.pixelValues().dim(1), p.tokens(proc.config().mergeSize()), out);
        spec.commandLine().getOut().flush();
        return 0;
    }
}
