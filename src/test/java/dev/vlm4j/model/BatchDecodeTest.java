package dev.vlm4j.model;

import dev.vlm4j.Compare;
import dev.vlm4j.Fixtures;
import dev.vlm4j.compute.cpu.CpuBackend;
import org.junit.jupiter.api.Test;

import java.util.List;

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
}
