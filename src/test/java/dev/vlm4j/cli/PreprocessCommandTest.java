package dev.vlm4j.cli;

import dev.vlm4j.Fixtures;
import dev.vlm4j.preprocess.image.PixelAssert;
import dev.vlm4j.tensor.DType;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;

import static org.junit.jupiter.api.Assertions.*;

class PreprocessCommandTest {

    @Test
    void writesPixelValuesAndGrid(@TempDir Path tmp) {
        Path c = Fixtures.cases().resolve("image_describe");
        Path out = tmp.resolve("pv.safetensors");
        int rc = Main.run("preprocess", "--model", Fixtures.tinyModel().toString(), "--image",
                c.resolve("image0.png").toString(), "--out", out.toString());
        assertEquals(0, rc, "exit code");
        try (SafeTensorsFile got = SafeTensorsFile.open(out); SafeTensorsFile want = SafeTensorsFile.open(c.resolve("tensors.safetensors"))) {
            assertEquals(DType.F32, got.get("pixel_values").dtype());
            assertEquals(DType.I64, got.get("image_grid_thw").dtype());
            assertArrayEquals(new long[]{1, 3}, got.get("image_grid_thw").shape());
            long[] g = got.get("image_grid_thw").toLongArray(), w = want.get("image_grid_thw").toLongArray();
            assertArrayEquals(w, g, () -> "image_grid_thw expected " + Arrays.toString(w) + ", got " + Arrays.toString(g));
            PixelAssert.assertClose("pixel_values", want.get("pixel_values"), got.get("pixel_values"));
        }
    }

    @Test
    void pixelOverridesChangeTheGrid(@TempDir Path tmp) {
        Path out = tmp.resolve("pv.safetensors");
        int rc = Main.run("preprocess", "--model", Fixtures.tinyModel().toString(), "--image",
                Fixtures.dir().resolve("image_processor/img1_640x480.png").toString(),
                "--max-pixels", "200704", "--min-pixels", "3136", "--out", out.toString());
        assertEquals(0, rc);
        try (SafeTensorsFile got = SafeTensorsFile.open(out)) {
            // smart_resize(480, 640, max 200704) = 364x504 (as Python computes it) -> grid [1, 26, 36]
            assertArrayEquals(new long[]{1, 26, 36}, got.get("image_grid_thw").toLongArray());
            assertArrayEquals(new long[]{26 * 36, 1176}, got.get("pixel_values").shape());
        }
    }

    @Test
    void unreadableImageIsAnError(@TempDir Path tmp) throws Exception {
        Path bad = tmp.resolve("bad.png");
        Files.writeString(bad, "not an image");
        PrintStream old = System.err;
        ByteArrayOutputStream err = new ByteArrayOutputStream();
        int rc;
        System.setErr(new PrintStream(err, true, StandardCharsets.UTF_8));
        try {
            rc = Main.run("preprocess", "--model", Fixtures.tinyModel().toString(), "--image", bad.toString(),
                    "--out", tmp.resolve("o.safetensors").toString());
        } finally {
            System.setErr(old);
        }
        assertNotEquals(0, rc, "exit code");
        String msg = err.toString(StandardCharsets.UTF_8);
        assertTrue(msg.contains("bad.png"), "error names the file: " + msg);
        assertFalse(Files.exists(tmp.resolve("o.safetensors")), "no output on error");
    }
}
