package dev.vlm4j.preprocess.image;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import dev.vlm4j.Fixtures;
import dev.vlm4j.preprocess.video.ProcessedVideo;
import dev.vlm4j.preprocess.video.VideoProcessor;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

/** Image and video preprocessing against the transformers fixtures. */
class ImageProcessorParityTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static ImageProcessor defaultsProcessor(Path dir) {
        JsonNode cfg;
        try {
            cfg = JSON.readTree(dir.resolve("preprocessor_config_defaults.json").toFile());
        } catch (IOException e) {
            throw new RuntimeException(e);
        }
        return new ImageProcessor(ImageProcessorConfig.fromJson(cfg, ImageProcessorConfig.Kind.IMAGE, "defaults"));
    }

    @TestFactory
    List<DynamicTest> imageProcessorCases() throws IOException {
        Path dir = Fixtures.dir().resolve("image_processor");
        ImageProcessor proc = defaultsProcessor(dir);
        List<DynamicTest> tests = new ArrayList<>();
        List<String> lines = Files.readAllLines(dir.resolve("cases.jsonl"));
        for (int i = 0; i < lines.size(); i++) {
            if (lines.get(i).isBlank()) continue;
            JsonNode row = JSON.readTree(lines.get(i));
            int index = i;
            String file = row.get("file").asText();
            tests.add(DynamicTest.dynamicTest(file, () -> {
                RgbImage img = ImageLoader.load(dir.resolve(file));
                assertEquals(row.get("width").asInt(), img.width(), file + ": decoded width");
                assertEquals(row.get("height").asInt(), img.height(), file + ": decoded height");
                ProcessedImage out = proc.process(img);
                int[] grid = JSON.treeToValue(row.get("grid_thw"), int[].class);
                assertArrayEquals(grid, out.gridThw(), () -> file + ": grid_thw expected " + Arrays.toString(grid)
                        + ", got " + Arrays.toString(out.gridThw()));
                try (SafeTensorsFile st = SafeTensorsFile.open(dir.resolve("pixel_values.safetensors"))) {
                    String name = "img" + index + ".slow";
                    if (st.contains(name)) {
                        double[] d = PixelAssert.assertClose(file + " pixel_values", st.get(name), out.pixelValues());
                        ProcessedImage pil = proc.withResampling(BicubicResampler.Mode.PILLOW).process(img);
                        double[] dp = PixelAssert.assertClose(file + " pixel_values (Pillow resampling)", st.get(name),
                                pil.pixelValues());
                        System.out.printf("%s: max %.5f mean %.6f (Pillow resampling: max %.5f mean %.6f)%n",
                                file, d[0], d[1], dp[0], dp[1]);
                        assertEquals(0.0, d[0], 1e-6, file + ": torchvision-mode resampling should be bit-exact, max abs diff " + d[0]);
                    }
                }
            }));
        }
        return tests;
    }

    @TestFactory
    List<DynamicTest> imageCases() {
        List<DynamicTest> tests = new ArrayList<>();
        for (String name : List.of("image_describe", "two_images", "lora")) {
            tests.add(DynamicTest.dynamicTest(name, () -> {
                Path c = Fixtures.cases().resolve(name);
                if (!Files.isDirectory(c)) return;
                JsonNode cas = JSON.readTree(c.resolve("case.json").toFile());
                List<RgbImage> images = new ArrayList<>();
                for (JsonNode f : cas.get("images")) images.add(ImageLoader.load(c.resolve(f.asText())));
                ProcessedImages out = ImageProcessor.fromModelDir(Fixtures.tinyModel(), Map.of()).processAll(images);
                try (SafeTensorsFile st = SafeTensorsFile.open(c.resolve("tensors.safetensors"))) {
                    Assumptions.assumeTrue(st.contains("image_grid_thw"), name + " has no image tensors");
                    long[] grid = st.get("image_grid_thw").toLongArray();
                    long[] got = out.gridTensor().toLongArray();
                    assertArrayEquals(grid, got, () -> name + ": image_grid_thw expected " + Arrays.toString(grid)
                            + ", got " + Arrays.toString(got));
                    double[] d = PixelAssert.assertClose(name + " pixel_values", st.get("pixel_values"), out.pixelValues());
                    System.out.printf("%s: max %.5f mean %.6f%n", name, d[0], d[1]);
                }
            }));
        }
        return tests;
    }

    @Test
    void transformers5LayoutGivesSameConfig() {
        ImageProcessorConfig a = ImageProcessorConfig.load(Fixtures.tinyModel(), ImageProcessorConfig.Kind.IMAGE);
        ImageProcessorConfig b = ImageProcessorConfig.load(Fixtures.dir().resolve("layout-transformers5"),
                ImageProcessorConfig.Kind.IMAGE);
        assertEquals(a.minPixels(), b.minPixels(), "min_pixels");
        assertEquals(a.maxPixels(), b.maxPixels(), "max_pixels");
        assertArrayEquals(a.imageMean(), b.imageMean(), "image_mean");
        assertArrayEquals(a.imageStd(), b.imageStd(), "image_std");
        assertEquals(3136, a.minPixels());
        assertEquals(50176, a.maxPixels());
        ImageProcessorConfig v = ImageProcessorConfig.load(Fixtures.dir().resolve("layout-transformers5"),
                ImageProcessorConfig.Kind.VIDEO);
        assertEquals(25088, v.maxPixels(), "video longest_edge");
    }

    @Test
    void videoCase() throws IOException {
        Path c = Fixtures.cases().resolve("video");
        JsonNode cas = JSON.readTree(c.resolve("case.json").toFile());
        JsonNode video = cas.get("videos").get(0);
        List<Path> frames = new ArrayList<>();
        for (JsonNode f : video.get("frames")) frames.add(c.resolve(f.asText()));
        double fps = video.get("fps").asDouble();
        for (Path model : List.of(Fixtures.tinyModel(), Fixtures.dir().resolve("layout-transformers5"))) {
            ProcessedVideo out = VideoProcessor.fromModelDir(model, Map.of()).processFrameFiles(frames, fps);
            try (SafeTensorsFile st = SafeTensorsFile.open(c.resolve("tensors.safetensors"))) {
                long[] grid = st.get("video_grid_thw").toLongArray();
                long[] got = out.gridTensor().toLongArray();
                assertArrayEquals(grid, got, () -> "video_grid_thw expected " + Arrays.toString(grid) + ", got "
                        + Arrays.toString(got));
                float sec = st.get("second_per_grid_ts").toFloatArray()[0];
                assertEquals(sec, (float) out.secondPerGridT(), 1e-7, "second_per_grid_ts");
                Tensor pv = st.get("pixel_values_videos");
                double[] d = PixelAssert.assertClose("pixel_values_videos", pv, out.pixelValues());
                System.out.printf("video (%s): max %.5f mean %.6f%n", model.getFileName(), d[0], d[1]);
            }
        }
    }
}
