package dev.vlm4j.compute.cuda;

import dev.vlm4j.Fixtures;
import dev.vlm4j.model.Qwen25VLModel;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.SplittableRandom;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Decode steps replayed as CUDA graphs compute exactly what the eager launches compute: the tiny fixture model
 * decodes the same prompts with graphs on and off, greedily (batch 1 through {@code extend}, batch 3 through
 * {@code decodeBatchGreedy} and {@code decodeBatch}), past 64-key attention split boundaries, where a replay is refused and
 * the step captured again. Logits must be bitwise equal and the graphs must really have been replayed.
 * Skipped, with the reason, without a usable CUDA device.
 */
class CudaGraphTest {
    static final int STEPS = 300;

    static Qwen25VLModel load(boolean graphs) {
        String why = CudaBackend.unavailableReason();
        Assumptions.assumeTrue(why == null, "CUDA unavailable: " + why);
        CudaBackend be = CudaBackend.create(0, Precision.BF16);
        be.useGraphs(graphs);
        return Qwen25VLModel.load(Fixtures.tinyModel(), be);
    }

    static int[] prompt(int seed, int n) {
        SplittableRandom r = new SplittableRandom(seed);
        int[] ids = new int[n];
        for (int i = 0; i < n; i++) ids[i] = r.nextInt(150000);
        return ids;
    }

    static int argmax(float[] a) {
        int arg = 0;
        for (int j = 1; j < a.length; j++) if (a[j] > a[arg]) arg = j;
        return arg;
    }

    /** Batch 1: every step's logits (prefill, then STEPS greedy extends). */
    static List<float[]> single(Qwen25VLModel m) {
        List<float[]> out = new ArrayList<>();
        int[] ids = prompt(1, 40);
        var seq = m.newSequence(ids.length + STEPS + 8);
        float[] last = m.lastLogits(m.prefill(seq, ids, null, null, null));
        out.add(last);
        for (int s = 0; s < STEPS; s++) {
            last = m.lastLogits(m.extend(seq, new int[]{argmax(last)}));
            out.add(last);
        }
        return out;
    }

    /** Batch 3 with different prompt lengths: greedy tokens, then the full logits of a few sampled-path steps. */
    static List<int[]> batch(Qwen25VLModel m, List<float[]> logits) {
        List<Qwen25VLModel.Sequence> seqs = new ArrayList<>();
        int[] next = new int[3];
        for (int i = 0; i < 3; i++) {
            int[] ids = prompt(10 + i, 20 + 90 * i);
            var s = m.newSequence(16);   // small on purpose: the caches grow (outside the captured step)
            next[i] = argmax(m.lastLogits(m.prefill(s, ids, null, null, null)));
            seqs.add(s);
        }
        List<int[]> toks = new ArrayList<>();
        for (int s = 0; s < STEPS / 2; s++) {
            next = m.decodeBatchGreedy(seqs, next);
            toks.add(next.clone());
        }
        for (int s = 0; s < 5; s++) {
            float[][] l = m.decodeBatch(seqs, next);
            for (int i = 0; i < 3; i++) {
                logits.add(l[i]);
                next[i] = argmax(l[i]);
            }
        }
        return toks;
    }

    @Test
    void replayedStepsEqualEagerSteps() {
        List<float[]> eager, graphed, eagerB = new ArrayList<>(), graphedB = new ArrayList<>();
        List<int[]> eagerT, graphedT;
        long[] counts;
        try (Qwen25VLModel m = load(false)) {
            eager = single(m);
            eagerT = batch(m, eagerB);
        }
        try (Qwen25VLModel m = load(true)) {
            graphed = single(m);
            graphedT = batch(m, graphedB);
            counts = ((CudaBackend) m.backend()).graphCounts();
        }
        System.out.printf("CUDA graphs: %d captures, %d replays%n", counts[0], counts[1]);
        for (int s = 0; s < eager.size(); s++)
            assertArrayEquals(eager.get(s), graphed.get(s), "batch-1 logits differ at step " + s);
        for (int s = 0; s < eagerT.size(); s++)
            assertArrayEquals(eagerT.get(s), graphedT.get(s), "batch-3 greedy tokens differ at step " + s);
        for (int s = 0; s < eagerB.size(); s++)
            assertArrayEquals(eagerB.get(s), graphedB.get(s), "batch-3 logits differ at row " + s);
        long steps = eager.size() - 1 + eagerT.size() + eagerB.size() / 3;
        assertEquals(steps, counts[0] + counts[1], "every decode step is a capture or a replay");
        assertTrue(counts[1] >= steps - 16, "steps should be replays but for a few captures: " + Arrays.toString(counts));
        assertTrue(counts[0] >= 3, "a capture per step kind plus one per 64-key attention split boundary: " + Arrays.toString(counts));
    }
}
