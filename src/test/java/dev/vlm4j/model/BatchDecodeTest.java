package dev.vlm4j.model;

import dev.vlm4j.Compare;
import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.cpu.CpuBackend;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;

/** Decoding several sequences in one batched step gives each the logits it gets when decoded alone. */
class BatchDecodeTest {
    @Test
    void batchedStepEqualsSingleSteps() {
        try (Qwen25VLModel m = Qwen25VLModel.load(Fixtures.tinyModel(), new CpuBackend())) {
            int[][] prompts = {{151644, 872, 198, 9707, 151645, 198, 151644, 77091, 198}, {151644, 872, 198, 40, 2776}, {16, 17}};
            int[] next = {1879, 11, 18};
            Qwen25VLModel.Sequence[] solo = new Qwen25VLModel.Sequence[3], batch = new Qwen25VLModel.Sequence[3];
            float[][] expected = new float[3][];
            for (int i = 0; i < 3; i++) {
                solo[i] = m.newSequence(16);
                batch[i] = m.newSequence(16);
                m.prefill(solo[i], prompts[i], null, null, null);
                m.prefill(batch[i], prompts[i], null, null, null);
                expected[i] = m.lastLogits(m.extend(solo[i], new int[]{next[i]}));
            }
            float[][] got = m.decodeBatch(List.of(batch), next);
            for (int i = 0; i < 3; i++) Compare.assertClose("sequence " + i + " logits", expected[i], got[i], 1e-4);
            // and a second batched step keeps agreeing
            int[] after = {13, 14, 15};
            for (int i = 0; i < 3; i++) expected[i] = m.lastLogits(m.extend(solo[i], new int[]{after[i]}));
            got = m.decodeBatch(List.of(batch), after);
            for (int i = 0; i < 3; i++) Compare.assertClose("sequence " + i + " logits, step 2", expected[i], got[i], 1e-4);
        }
    }

    /**
     * 13 sequences (the 8-row, 4-row and 1-row kernels all take part) decoded together, plus two prompts whose last
     * rows share the step's LM head, give the logits each gets alone. The matrix kernels compute every row with the
     * same operations in the same order (bit-identical results); the tolerance of a few ulps is for attention's vector
     * exp, which may round differently before and after the JIT compiles it (the solo steps run first, colder).
     */
    @Test
    void batchedStepWithPromptRowsEqualsSingleSteps() {
        try (Qwen25VLModel m = Qwen25VLModel.load(Fixtures.tinyModel(), new CpuBackend())) {
            int b = 13;
            List<Qwen25VLModel.Sequence> batch = new ArrayList<>();
            int[] tokens = new int[b];
            float[][] expected = new float[b + 2][];
            for (int i = 0; i < b; i++) {
                int[] prompt = {151644, 872, 198, 100 + 37 * i, 2776 + i, 151645, 198};
                Qwen25VLModel.Sequence solo = m.newSequence(16), s = m.newSequence(16);
                m.prefill(solo, prompt, null, null, null);
                m.prefill(s, prompt, null, null, null);
                batch.add(s);
                tokens[i] = 1000 + 7 * i;
                expected[i] = m.lastLogits(m.extend(solo, new int[]{tokens[i]}));
            }
            List<dev.vlm4j.tensor.Tensor> promptRows = new ArrayList<>();
            for (int p = 0; p < 2; p++) {
                var hidden = m.prefill(m.newSequence(8), new int[]{16 + p, 17, 18 + p}, null, null, null);
                expected[b + p] = m.lastLogits(hidden);
                promptRows.add(m.lastHiddenRow(hidden));
            }
            float[][] got = m.decodeBatch(batch, tokens, promptRows);
            for (int i = 0; i < b + 2; i++) assertArrayEquals(expected[i], got[i], 1e-5f, "row " + i);
        }
    }
}
