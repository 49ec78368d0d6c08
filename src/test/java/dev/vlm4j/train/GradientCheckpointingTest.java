package dev.vlm4j.train;

import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.train.autograd.GradBackend;
import dev.vlm4j.train.lora.LoraBackend;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Gradient checkpointing ({@code --gradient_checkpointing}) on the tiny fixture model: a step over a text sample and
 * an image sample gives bitwise the same loss and gradients with and without it, for full fine-tuning (vision tower
 * included) and for LoRA with dropout on every linear (the recompute must redraw the same masks, and the samples
 * after it must see the same mask stream), while the tape holds a fraction of the activations.
 */
class GradientCheckpointingTest {
    @TempDir Path tmp;

    /** One step's loss, every parameter's gradient and the peak bytes of saved activations. */
    record Run(double loss, Map<String, float[]> grads, long peakBytes) {}

    private List<SftDataset.Example> batch(TrainableModel tm) throws Exception {
        Path image = Fixtures.cases().resolve("lora/image0.png");
        Path ds = tmp.resolve("train.jsonl");
        Files.writeString(ds, String.join("\n",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"<image>What is this?\"},{\"role\":\"assistant\",\"content\":\"A gradient, from dark to light.\"}],"
                        + "\"images\":[\"" + image.toString().replace("\\", "\\\\") + "\"]}",
                "{\"messages\":[{\"role\":\"user\",\"content\":\"What color is the sky?\"},{\"role\":\"assistant\",\"content\":\"Blue, mostly.\"}]}"));
        SftDataset data = SftDataset.load(ds.toString());
        List<SftDataset.Example> out = new ArrayList<>();
        for (SftDataset.Sample s : data.samples()) out.add(data.encode(tm.vlm(), s));
        return out;
    }

    private static Run step(TrainableModel tm, List<SftDataset.Example> batch, boolean checkpointing) {
        return step(tm, batch, checkpointing ? TrainableModel.recomputedSegments("layer") : null);
    }

    private static Run step(TrainableModel tm, List<SftDataset.Example> batch, java.util.function.Predicate<String> recompute) {
        GradBackend g = tm.grad();
        g.checkpointing(recompute);
        g.zeroGrad();
        g.resetPeakSavedActivationBytes();
        tm.lora().training(true, 1234);
        double loss = 0;
        for (SftDataset.Example e : batch)
            loss += tm.lossAndBackward(e.ids(), e.labels(), e.images(), e.videos(), 1.0 / batch.size(), false).loss();
        tm.lora().training(false, 0);
        assertEquals(0, g.savedActivationBytes(), "the tape still holds activations after the backward");
        Map<String, float[]> grads = new LinkedHashMap<>();
        g.parameters().forEach((n, p) -> grads.put(n, p.grad().clone()));
        return new Run(loss, grads, g.peakSavedActivationBytes());
    }

    /**
     * The loss and every gradient agree to float rounding (in practice bitwise once the JIT has settled): the CPU
     * kernels' vector lane reductions may sum in another order once C2 compiles them, so two identical steps of a
     * cold JVM differ by up to about 2e-6 (relative L2) with or without checkpointing.
     */
    private static void assertSame(Run plain, Run ckpt, String what) {
        assertEquals(plain.loss(), ckpt.loss(), 1e-7 * Math.abs(plain.loss()), what + ": loss");
        double worst = 0;
        String worstName = null;
        int bitwise = 0;
        for (var e : plain.grads().entrySet()) {
            float[] a = e.getValue(), b = ckpt.grads().get(e.getKey());
            double d2 = 0, n2 = 0;
            for (int i = 0; i < a.length; i++) {
                d2 += (double) (a[i] - b[i]) * (a[i] - b[i]);
                n2 += (double) a[i] * a[i];
            }
            assertTrue(n2 > 0, what + ": no gradient for " + e.getKey());
            double rel = Math.sqrt(d2 / n2);
            if (rel > worst) { worst = rel; worstName = e.getKey(); }
            if (Arrays.equals(a, b)) bitwise++;
        }
        System.out.printf("%s: %d parameters (%d bitwise equal), loss %.9f vs %.9f, worst relative L2 %.2e (%s); "
                        + "peak saved activations %,d -> %,d bytes (%.1fx)%n", what, plain.grads().size(), bitwise, plain.loss(), ckpt.loss(),
                worst, worstName, plain.peakBytes(), ckpt.peakBytes(), (double) plain.peakBytes() / ckpt.peakBytes());
        assertTrue(worst <= 1e-5, what + ": gradients differ by " + worst + " (relative L2) for " + worstName);
    }

    @Test
    void fullFineTuningGradientsAreUnchanged() throws Exception {
        try (TrainableModel tm = TrainableModel.loadForFullTraining(Fixtures.tinyModel(), n -> true, null)) {
            List<SftDataset.Example> b = batch(tm);
            for (int i = 0; i < 3; i++) step(tm, b, i % 2 == 0);
            Run plain = step(tm, b, false), ckpt = step(tm, b, true);
            assertSame(plain, ckpt, "full");
            assertTrue(ckpt.peakBytes() * 2 < plain.peakBytes(), "peak saved activations " + plain.peakBytes() + " -> " + ckpt.peakBytes());
        }
    }

    @Test
    void loraWithDropoutGradientsAreUnchanged() throws Exception {
        try (TrainableModel tm = TrainableModel.load(Fixtures.tinyModel())) {
            List<String> linears = new ArrayList<>();
            tm.model().parameters().forEach((n, t) -> {
                if (t.rank() == 2 && !n.contains("embed") && !n.startsWith("lm_head") && !n.contains("patch_embed")) linears.add(n);
            });
            tm.addNewLora(linears, 4, 2.0, 0.1f, 7);
            Random rng = new Random(3);
            List<LoraBackend.Target> targets = new ArrayList<>(tm.lora().targets());
            targets.sort(Comparator.comparing(LoraBackend.Target::module));
            for (LoraBackend.Target t : targets) { // B starts at zero; make A's gradients non-zero too
                float[] b = t.b().heapFloats();
                for (int i = 0; i < b.length; i++) b[i] = (float) (rng.nextGaussian() * 0.05);
            }
            List<SftDataset.Example> b = batch(tm);
            for (int i = 0; i < 3; i++) step(tm, b, i % 2 == 0); // let the JIT settle (see assertSame)
            Run plain = step(tm, b, false), ckpt = step(tm, b, true), again = step(tm, b, false);
            Run mlp = step(tm, b, TrainableModel.recomputedSegments("mlp"));
            assertSame(plain, again, "lora (repeat)");
            assertSame(plain, ckpt, "lora");
            assertSame(plain, mlp, "lora, MLP halves recomputed");
            assertTrue(ckpt.peakBytes() * 2 < plain.peakBytes(), "peak saved activations " + plain.peakBytes() + " -> " + ckpt.peakBytes());
            // the attention halves keep their activations: between recomputing nothing and recomputing whole layers
            assertTrue(ckpt.peakBytes() < mlp.peakBytes() && mlp.peakBytes() < plain.peakBytes(),
                    "peak saved activations: layer " + ckpt.peakBytes() + ", mlp " + mlp.peakBytes() + ", none " + plain.peakBytes());
        }
    }

    /** With more layers the saved activations shrink by more: an 8-layer decoder (the fixture's shape otherwise), LoRA. */
    @Test
    void deeperModelKeepsAFractionOfTheActivations() throws Exception {
        var cfg = (com.fasterxml.jackson.databind.node.ObjectNode) new com.fasterxml.jackson.databind.ObjectMapper()
                .readTree(Fixtures.tinyModel().resolve("config.json").toFile());
        cfg.put("num_hidden_layers", 8);
        Path cfgFile = tmp.resolve("deep-config.json"), dir = tmp.resolve("deep");
        Files.writeString(cfgFile, cfg.toString());
        assertEquals(0, dev.vlm4j.cli.Main.run("init", "--preset", cfgFile.toString(), "--out", dir.toString(),
                "--tokenizer-from", Fixtures.tinyModel().toString()));
        try (TrainableModel tm = TrainableModel.load(dir)) {
            SftArgs a = new SftArgs();
            tm.addNewLora(LoraTargets.select(tm.model().parameters(), a), 8, 4.0, 0.05f, 42);
            List<SftDataset.Example> b = batch(tm).subList(1, 2);
            Run plain = step(tm, b, false), ckpt = step(tm, b, true);
            assertEquals(plain.loss(), ckpt.loss(), 1e-7 * Math.abs(plain.loss()));
            System.out.printf("8 layers, lora: peak saved activations %,d -> %,d bytes (%.1fx)%n", plain.peakBytes(), ckpt.peakBytes(),
                    (double) plain.peakBytes() / ckpt.peakBytes());
            assertTrue(ckpt.peakBytes() * 4 < plain.peakBytes(), "peak saved activations " + plain.peakBytes() + " -> " + ckpt.peakBytes());
        }
    }

    @Test
    void aSegmentMayReadOnlyItsInputAndWeights() {
        GradBackend g = new GradBackend(new CpuBackend());
        Tensor w = Tensor.of(new float[]{1, 2, 3, 4}, 2, 2);
        g.addParameter("w", w);
        g.checkpointing(true);
        g.record(true);
        Tensor x = g.linear(g.fromHost(new float[]{1, 1, 0.5f, -1}, 2, 2), w, null);
        Tensor other = g.linear(x, w, null);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> g.checkpoint("s", x, in -> g.add(in, other)));
        assertTrue(e.getMessage().contains("other than its input"), e.getMessage());
        e = assertThrows(IllegalStateException.class, () -> g.checkpoint("s", x, in -> {
            g.rotary(in, 1, g.fromHost(new float[]{1, 1, 1, 1}, 2, 2), g.fromHost(new float[4], 2, 2));
            return in;
        }));
        assertTrue(e.getMessage().contains("modifies its input"), e.getMessage());
        g.record(false);
        g.clearTape();
    }
}
