package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.Backend;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.compute.cuda.CudaBackend;
import dev.vlm4j.compute.cuda.Precision;
import dev.vlm4j.train.autograd.GradBackend;
import dev.vlm4j.train.lora.LoraBackend;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/**
 * LoRA training on the CUDA backend against the CPU one, on the tiny fixture model: one step over an image sample
 * and a text sample, LoRA (with dropout, whose seeded masks are the same on both backends) on every linear layer of
 * the language model and the vision tower, B factors set to the same random values so that every factor has a
 * gradient. In float32 mode the loss and each gradient must match the CPU's (the CPU is the reference of the
 * PyTorch parity suite), with and without gradient checkpointing; in bf16 mode within bf16 rounding. Then AdamW
 * steps on both must keep the factors together. Skipped without a usable CUDA device.
 */
class CudaTrainParityTest {
    @TempDir Path tmp;

    record Run(double loss, Map<String, float[]> grads) {}

    private static void assumeCuda() {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "CUDA unavailable: " + why);
        Assumptions.assumeTrue(Files.isDirectory(Fixtures.tinyModel()), "tiny model absent");
    }

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

    /** The model on a backend with LoRA on every linear weight and B factors drawn from a fixed seed. */
    private static TrainableModel model(Backend base) { return model(base, true, 0.1f); }

    private static TrainableModel model(Backend base, boolean vision, float dropout) {
        TrainableModel tm = TrainableModel.load(Fixtures.tinyModel(), base);
        List<String> targets = new ArrayList<>();
        for (var e : tm.model().parameters().entrySet())
            if (e.getKey().endsWith(".weight") && e.getValue().rank() == 2 && !e.getKey().contains("embed") && !e.getKey().startsWith("lm_head")
                    && !e.getKey().contains("patch_embed") && (vision || !e.getKey().startsWith("visual"))) targets.add(e.getKey());
        tm.addNewLora(targets, 4, 2.0, dropout, 7);
        Random rnd = new Random(11);
        for (LoraBackend.Target t : tm.lora().targets()) {
            float[] b = new float[Math.toIntExact(t.b().numel())];
            for (int i = 0; i < b.length; i++) b[i] = (float) (rnd.nextGaussian() * 0.05);
            tm.grad().gradOps().copyFromHost(t.b(), b);
        }
        return tm;
    }

    private static Run step(TrainableModel tm, List<SftDataset.Example> batch, boolean checkpointing) {
        return step(tm, batch, checkpointing ? "layer" : null);
    }

    /** One step with gradient checkpointing of the given scope ({@link TrainableModel#recomputedSegments}; null: off). */
    private static Run step(TrainableModel tm, List<SftDataset.Example> batch, String scope) {
        GradBackend g = tm.grad();
        g.checkpointing(scope == null ? null : TrainableModel.recomputedSegments(scope));
        g.zeroGrad();
        tm.lora().training(true, 99);
        double loss = 0;
        for (SftDataset.Example e : batch)
            loss += tm.lossAndBackward(e.ids(), e.labels(), e.images(), e.videos(), 1.0 / batch.size(), false).loss();
        tm.lora().training(false, 0);
        Map<String, float[]> grads = new LinkedHashMap<>();
        g.parameters().forEach((n, p) -> grads.put(n, p.grad().clone()));
        return new Run(loss, grads);
    }

    /** Asserts every gradient within {@code bound} relative L2 of the reference; prints the worst. */
    private static void assertClose(Run ref, Run got, double lossBound, double bound, String what) {
        assertEquals(ref.loss(), got.loss(), lossBound * Math.abs(ref.loss()), what + ": loss");
        double worst = 0;
        String worstName = null;
        for (var e : ref.grads().entrySet()) {
            float[] a = e.getValue(), b = got.grads().get(e.getKey());
            assertNotNull(b, what + ": no gradient for " + e.getKey());
            double d2 = 0, n2 = 0;
            for (int i = 0; i < a.length; i++) {
                d2 += (double) (a[i] - b[i]) * (a[i] - b[i]);
                n2 += (double) a[i] * a[i];
            }
            assertTrue(n2 > 0, what + ": the CPU gradient of " + e.getKey() + " is zero (the test would not see a difference)");
            double rel = Math.sqrt(d2 / n2);
            if (rel > worst) { worst = rel; worstName = e.getKey(); }
            assertTrue(rel <= bound, String.format("%s: gradient of %s differs from the CPU's by relative L2 %.3e (bound %.1e)",
                    what, e.getKey(), rel, bound));
        }
        System.out.printf("%s: %d gradients, loss %.9f (CPU %.9f), worst relative L2 %.2e (%s)%n", what, ref.grads().size(),
                got.loss(), ref.loss(), worst, worstName);
    }

    @Test
    void loraGradientsMatchTheCpu() throws Exception {
        assumeCuda();
        Run cpu;
        List<SftDataset.Example> data;
        try (TrainableModel tm = model(new CpuBackend())) {
            data = batch(tm);
            cpu = step(tm, data, false);
        }
        try (TrainableModel tm = model(CudaBackend.create(0, Precision.F32))) {
            assertClose(cpu, step(tm, data, false), 1e-5, 2e-4, "CUDA f32");
            assertClose(cpu, step(tm, data, true), 1e-5, 2e-4, "CUDA f32, gradient checkpointing");
            assertClose(cpu, step(tm, data, "mlp"), 1e-5, 2e-4, "CUDA f32, gradient checkpointing of the MLP halves");
        }
        try (TrainableModel tm = model(CudaBackend.create(0, Precision.BF16))) {
            assertClose(cpu, step(tm, data, true), 2e-2, 0.15, "CUDA bf16, gradient checkpointing");
            assertClose(cpu, step(tm, data, "mlp"), 2e-2, 0.15, "CUDA bf16, gradient checkpointing of the MLP halves");
            assertClose(cpu, step(tm, data, false), 2e-2, 0.15, "CUDA bf16");
            // every saved activation of this small model kept in bf16 (only large ones are by default)
            String was = System.getProperty("vlm4j.cuda.compactMin");
            System.setProperty("vlm4j.cuda.compactMin", "0");
            try {
                assertClose(cpu, step(tm, data, false), 2e-2, 0.15, "CUDA bf16, saved activations in bf16");
                assertClose(cpu, step(tm, data, "mlp"), 2e-2, 0.15, "CUDA bf16, saved activations in bf16, MLP halves recomputed");
            } finally {
                if (was == null) System.clearProperty("vlm4j.cuda.compactMin");
                else System.setProperty("vlm4j.cuda.compactMin", was);
            }
        }
    }

    @Test
    void adamWStepsAgreeWithTheCpu() throws Exception {
        assumeCuda();
        Map<String, float[]> cpuParams = new LinkedHashMap<>(), gpuParams = new LinkedHashMap<>();
        for (int side = 0; side < 2; side++) {
            Backend base = side == 0 ? new CpuBackend() : CudaBackend.create(0, Precision.F32);
            try (TrainableModel tm = model(base)) {
                List<SftDataset.Example> data = batch(tm);
                List<Parameter> params = new ArrayList<>(tm.grad().parameters().values());
                AdamW opt = new AdamW(params, 0.9, 0.999, 1e-8, 0.1);
                for (int s = 0; s < 3; s++) {
                    step(tm, data, true);
                    AdamW.clipGradNorm(params, 1.0);
                    opt.step(1e-3);
                }
                for (Parameter p : params)
                    (side == 0 ? cpuParams : gpuParams).put(p.name(), tm.grad().toHost(p.tensor()));
            }
        }
        double worst = 0;
        for (var e : cpuParams.entrySet()) {
            float[] a = e.getValue(), b = gpuParams.get(e.getKey());
            double d2 = 0, n2 = 0;
            for (int i = 0; i < a.length; i++) {
                d2 += (double) (a[i] - b[i]) * (a[i] - b[i]);
                n2 += (double) a[i] * a[i];
            }
            double rel = Math.sqrt(d2 / n2);
            worst = Math.max(worst, rel);
            assertTrue(rel <= 1e-4, String.format("%s after 3 AdamW steps differs from the CPU's by relative L2 %.3e", e.getKey(), rel));
        }
        System.out.printf("AdamW on CUDA: %d parameters after 3 steps, worst relative L2 vs CPU %.2e%n", cpuParams.size(), worst);
    }
}
