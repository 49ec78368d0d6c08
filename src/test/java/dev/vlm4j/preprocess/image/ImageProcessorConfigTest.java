package dev.vlm4j.preprocess.image;

import com.fasterxml.jackson.databind.ObjectMapper;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static org.junit.jupiter.api.Assertions.*;

class ImageProcessorConfigTest {
    private static final ObjectMapper JSON = new ObjectMapper();

    private static ImageProcessorConfig parse(String json) throws Exception {
        return ImageProcessorConfig.fromJson(JSON.readTree(json), ImageProcessorConfig.Kind.IMAGE, "test");
    }

    @Test
    void pixelBudgetForms() throws Exception {
        assertEquals(3136, parse("{\"min_pixels\": 3136, \"max_pixels\": 12845056}").minPixels());
        assertEquals(12845056, parse("{\"min_pixels\": 3136, \"max_pixels\": 12845056}").maxPixels());
        var s = parse("{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 2000}}");
        assertEquals(100, s.minPixels());
        assertEquals(2000, s.maxPixels());
        var both = parse("{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 2000}, \"max_pixels\": 5000}");
        assertEquals(5000, both.maxPixels(), "min_pixels/max_pixels win over size");
        var d = parse("{}");
        assertEquals(56 * 56, d.minPixels());
        assertEquals(28 * 28 * 1280, d.maxPixels());
        assertEquals(1176, d.patchDim());
        assertThrows(ImageException.class, () -> parse("{\"resample\": 2}"));
    }

    @Test
    void environmentAndPerCallOverrides(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("preprocessor_config.json"), "{\"min_pixels\": 3136, \"max_pixels\": 50176}");
        ImageProcessor env = ImageProcessor.fromModelDir(dir, Map.of("MAX_PIXELS", "16*28*28", "MIN_PIXELS", "784"));
        assertEquals(16 * 784, env.config().maxPixels(), "MAX_PIXELS");
        assertEquals(784, env.config().minPixels(), "MIN_PIXELS");
        RgbImage img = new RgbImage(640, 480, new byte[640 * 480 * 3]);
        assertArrayEquals(new int[]{1, 6, 8}, env.process(img).gridThw(), "env budget");
        assertArrayEquals(new int[]{1, 12, 18}, env.process(img, null, 50176L).gridThw(), "per-call max wins");
        var e = assertThrows(ImageException.class, () -> ImageProcessor.fromModelDir(dir, Map.of("MAX_PIXELS", "lots")));
        assertTrue(e.getMessage().contains("MAX_PIXELS"), e.getMessage());
    }

    @Test
    void tokenLimit(@TempDir Path dir) throws Exception {
        Files.writeString(dir.resolve("preprocessor_config.json"), "{\"min_pixels\": 3136, \"max_pixels\": 50176}");
        ImageProcessor p = ImageProcessor.fromModelDir(dir, Map.of()).withMaxTokens(50);
        RgbImage img = new RgbImage(640, 480, new byte[640 * 480 * 3]);
        var e = assertThrows(ImageException.class, () -> p.process(img));
        assertTrue(e.getMessage().contains("54 tokens") && e.getMessage().contains("50"), e.getMessage());
        assertEquals(54, p.withMaxTokens(54).process(img).tokens(2));
    }

    @Test
    void severalImagesAreConcatenated() {
        ImageProcessor p = new ImageProcessor(ImageProcessorConfig.defaults(ImageProcessorConfig.Kind.IMAGE)
                .withPixels(3136, 50176));
        RgbImage a = new RgbImage(56, 56, new byte[56 * 56 * 3]);
        byte[] white = new byte[28 * 84 * 3];
        java.util.Arrays.fill(white, (byte) 255);
        RgbImage b = new RgbImage(28, 84, white); // 84 high, 28 wide -> min budget upsizes to 112x56? check grid
        ProcessedImages all = p.processAll(List.of(a, b));
        ProcessedImage pb = p.process(b);
        assertEquals(2, all.gridThw().size());
        assertArrayEquals(new long[]{16 + pb.pixelValues().dim(0), 1176}, all.pixelValues().shape());
        assertArrayEquals(new long[]{2, 3}, all.gridTensor().shape());
        float[] v = all.pixelValues().toFloatArray();
        assertEquals(pb.pixelValues().toFloatArray()[0], v[16 * 1176], "second image's rows follow the first's");
    }
}
