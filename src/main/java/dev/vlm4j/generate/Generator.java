package dev.vlm4j.generate;

import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.preprocess.tokenizer.StreamDecoder;
import dev.vlm4j.preprocess.tokenizer.Tokenizer;

import java.util.Arrays;
import java.util.function.Consumer;

/**
 * The decode loop: sample a token from the last logits, stop on an end-of-sequence id, a stop string or
 * max_new_tokens, stream the new text, feed the token back. Text is decoded incrementally so multi-byte characters
 * split across tokens are never emitted half-done, and stop strings are never streamed.
 */
public final class Generator {
    /** What a generation produced. {@code finishReason} is "stop" (EOS or stop string) or "length". */
    public record Result(int[] tokens, String text, String finishReason, String matchedStop, long decodeNanos) {
        public int count() { return tokens.length; }
    }

    /** Per-step observer (for logprobs, tracing); called with the logits the token was chosen from. */
    public interface StepListener {
        void onStep(int step, float[] logits, int token);
    }

    private final Qwen25VLModel model;
    private final Tokenizer tokenizer;
    private final int[] eosIds;

    public Generator(Qwen25VLModel model, Tokenizer tokenizer, int[] eosIds) {
        this.model = model;
        this.tokenizer = tokenizer;
        this.eosIds = eosIds.clone();
    }

    /**
     * Continues {@code seq} (already prefilled with {@code promptIds}) from {@code logits}, the prompt's last-position
     * logits. {@code onText} receives text pieces as they are final; {@code onStep} (optional) each step's logits.
     * With {@code stopAtEos} false, exactly max_new_tokens tokens are generated (tracing).
     */
    public Result generate(Qwen25VLModel.Sequence seq, int[] promptIds, float[] logits, SamplingOptions opts,
                           boolean stopAtEos, Consumer<String> onText, StepListener onStep) {
        long t0 = System.nanoTime();
        Sampler sampler = new Sampler(opts);
        int max = opts.maxNewTokens();
        int[] history = Arrays.copyOf(promptIds, promptIds.length + max);
        int count = promptIds.length;
        int[] out = new int[max];
        int n = 0;
        StreamDecoder dec = new StreamDecoder(tokenizer, true);
        StopStrings stops = new StopStrings(opts.stop() == null ? java.util.List.of() : opts.stop());
        String finish = "length";
        while (n < max) {
            int tok = sampler.next(logits, history, count);
            if (onStep != null) onStep.onStep(n, logits, tok);
            if (stopAtEos && isEos(tok)) {
                finish = "stop";
                break;
            }
            out[n++] = tok;
            history[count++] = tok;
            if (stopAtEos) {
                StopStrings.Chunk c = stops.append(dec.push(tok));
                if (!c.text().isEmpty() && onText != null) onText.accept(c.text());
                if (c.stopped()) {
                    finish = "stop";
                    break;
                }
            } else if (onText != null) {
                onText.accept(dec.push(tok));
            }
            if (n < max) logits = model.lastLogits(model.extend(seq, new int[]{tok}));
        }
        if (!stops.stopped()) {
            String rest = stops.append(dec.finish()).text();
            if (!rest.isEmpty() && onText != null) onText.accept(rest);
            if (!stops.stopped()) {
                String tail = stops.finish();
                if (!tail.isEmpty() && onText != null) onText.accept(tail);
            }
        }
        String text = stopAtEos ? stops.text() : tokenizer.decode(Arrays.copyOf(out, n), true);
        return new Result(Arrays.copyOf(out, n), text, finish, stops.matchedStop(), System.nanoTime() - t0);
    }

    private boolean isEos(int tok) {
        for (int e : eosIds) if (e == tok) return true;
        return false;
    }
}
