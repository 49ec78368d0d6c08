package dev.vlm4j.train;

import dev.vlm4j.train.autograd.Parameter;
import dev.vlm4j.compute.cpu.CpuBackend;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.train.autograd.GradBackend;
import org.junit.jupiter.api.Test;

import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** AdamW, clipping and the schedule against values worked out from torch's and transformers' definitions. */
class AdamWTest {
    @Test
    void oneStepMatchesTorchAdamW() {
        GradBackend g = new GradBackend(new CpuBackend());
        Tensor w = Tensor.of(new float[]{1f, -2f}, 2);
        Parameter p = g.addParameter("w", w);
        p.grad()[0] = 0.5f;
        p.grad()[1] = -0.25f;
        AdamW opt = new AdamW(List.of(p), 0.9, 0.999, 1e-8, 0.01);
        opt.step(0.1);
        // torch: p *= 1 - lr*wd; m_hat = g, v_hat = g^2 after one step, so p -= lr * g / (|g| + eps)
        assertEquals(1 * (1 - 0.001) - 0.1 * 0.5 / (0.5 + 1e-8), w.heapFloats()[0], 1e-6, "w[0] after one AdamW step");
        assertEquals(-2 * (1 - 0.001) + 0.1 * 0.25 / (0.25 + 1e-8), w.heapFloats()[1], 1e-6, "w[1] after one AdamW step");
    }

    @Test
    void clippingScalesToTheMaximumNorm() {
        GradBackend g = new GradBackend(new CpuBackend());
        Parameter p = g.addParameter("w", Tensor.of(new float[2], 2));
        p.grad()[0] = 3;
        p.grad()[1] = 4;
        assertEquals(5.0, AdamW.clipGradNorm(List.of(p), 1.0), 1e-9, "norm before clipping");
        assertEquals(0.6, p.grad()[0], 1e-6, "clipped gradient");
        assertEquals(0.8, p.grad()[1], 1e-6, "clipped gradient");
    }

    @Test
    void warmupThenCosine() {
        assertEquals(0.0, AdamW.cosineWithWarmup(1.0, 0, 2, 10), 1e-12, "first warmup step");
        assertEquals(0.5, AdamW.cosineWithWarmup(1.0, 1, 2, 10), 1e-12, "mid warmup");
        assertEquals(1.0, AdamW.cosineWithWarmup(1.0, 2, 2, 10), 1e-12, "peak after warmup");
        assertEquals(0.5, AdamW.cosineWithWarmup(1.0, 6, 2, 10), 1e-12, "half way through the cosine");
        assertEquals(0.0, AdamW.cosineWithWarmup(1.0, 10, 2, 10), 1e-12, "end");
    }
}
