package dev.vlm4j.serve;

import dev.vlm4j.api.VisionLanguageModel;
import dev.vlm4j.generate.ReasoningStream;
import dev.vlm4j.generate.Sampler;
import dev.vlm4j.generate.SamplingOptions;
import dev.vlm4j.generate.StopStrings;
import dev.vlm4j.model.Qwen25VLModel;
import dev.vlm4j.preprocess.tokenizer.StreamDecoder;
import dev.vlm4j.tensor.Tensor;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.LinkedBlockingDeque;
import java.util.concurrent.TimeUnit;

/**
 * Continuous batching over one loaded model. A single engine thread owns the model; each step it
 * <ol>
 *   <li>drops cancelled and timed-out sequences (their KV caches become garbage at once),</li>
 *   <li>admits waiting sequences: prefill of the prompt through the decoder layers (short text prompts admitted
 *       together side by side, see {@link #prefill}), keeping the last prompt row's hidden state; at most
 *       {@link ServeConfig#maxPrefillsPerStep} while others are decoding (they wait for the prefills), up to
 *       {@link ServeConfig#maxBatch} when none is,</li>
 *   <li>runs one {@link Qwen25VLModel#decodeBatchLogits} for the whole batch: the running sequences append their last
 *       token, and the admitted prompts' last rows join the same LM head product (the vocabulary-sized weight, the
 *       largest read of a step, is streamed once for everyone),</li>
 *   <li>samples the next token of every sequence with its own {@link Sampler}, streams the new text (incremental
 *       detokenization, stop strings, reasoning split) and retires finished sequences.</li>
 * </ol>
 * So requests join and leave the batch at every decode step. The waiting queue is bounded: {@link #submit} throws a
 * 429 {@link ApiException} when it is full. Listener callbacks run on the engine thread and must not block.
 * A request with {@code n > 1} becomes n sequences sharing one prefill: the first choice admitted runs the prompt,
 * the others start from a copy of its KV cache (and its last prompt row).
 */
public final class Engine implements AutoCloseable {
    /** Receives one request's output; called on the engine thread, must return quickly. */
    public interface Listener {
        /** New text of choice {@code choice}: reasoning and/or content (either may be empty), and per-token logprobs. */
        void onDelta(int choice, String reasoning, String content, List<TokenLogprob> logprobs);

        /** Choice {@code choice} ended: "stop" (end of sequence or a stop string) or "length". */
        void onFinish(int choice, String finishReason, int promptTokens, int completionTokens);

        /** Choice {@code choice} failed (timeout, bad input found at prefill, internal error). */
        void onError(int choice, ApiException error);
    }

    /** A generated token's log-probability and the most likely alternatives. */
    public record TokenLogprob(String token, int id, float logprob, List<TokenLogprob> top) {}

    /**
     * What to generate: the prompt, sampling options (seed s gives choice i the seed s + i), n choices,
     * top_logprobs (-1: no logprobs), whether the prompt already opened a think block, and the deadline.
     */
    public record Job(VisionLanguageModel.Prompt prompt, SamplingOptions sampling, int n, int topLogprobs,
                      boolean startInReasoning, long timeoutNanos, Listener listener) {}

    /** Cancels a submitted job (client gone); its sequences leave at the next step. */
    public static final class Handle {
        private final List<Seq> seqs;
        Handle(List<Seq> seqs) { this.seqs = seqs; }
        public void cancel() { for (Seq s : seqs) s.cancelled = true; }
    }

    private final String name;
    private final VisionLanguageModel vlm;
    private final ServeConfig config;
    private final ServeMetrics metrics;
    private final int[] eos;
    private final int vocab;
    /** Each step's logits, reused from step to step (engine thread only). */
    private float[] logitsBuffer;
    private final LinkedBlockingDeque<Seq> waiting = new LinkedBlockingDeque<>();
    private final List<Seq> running = new ArrayList<>();
    private final Thread thread;
    private volatile boolean closed;
    private volatile long steps, maxBatchSeen;
    private final java.util.concurrent.atomic.AtomicLong prefills = new java.util.concurrent.atomic.AtomicLong();
    private volatile int runningCount;

    public Engine(String name, VisionLanguageModel vlm, ServeConfig config, ServeMetrics metrics) {
        this.name = name;
        this.vlm = vlm;
        this.config = config;
        this.metrics = metrics;
        this.eos = vlm.generationConfig().eosTokenIds().clone();
        this.vocab = vlm.model().config().text().vocabSize();
        this.thread = Thread.ofPlatform().name("vlm4j-engine-" + name).daemon(true).unstarted(this::loop);
        thread.start();
    }

    public String name() { return name; }
    public VisionLanguageModel model() { return vlm; }
    /** Sequences waiting for admission. */
    public int queueDepth() { return waiting.size(); }
    /** Decode steps run so far. */
    public long steps() { return steps; }
    /** Prompts run through the model so far (the choices of one request share one). */
    public long prefills() { return prefills.get(); }
    /** The largest running batch seen so far. */
    public long maxBatchSeen() { return maxBatchSeen; }
    /** Sequences in the running batch (holding a KV cache) after the last step. */
    public int running() { return runningCount; }

    /** Queues a job's n sequences, or throws 429 when the queue cannot take them all, 503 when shutting down. */
    public Handle submit(Job job) {
        if (closed) throw new ApiException(503, "server_error", "shutting_down", null, "the server is shutting down");
        List<Seq> seqs = new ArrayList<>();
        long now = System.nanoTime();
        SharedPrompt shared = job.n() > 1 ? new SharedPrompt(job.n()) : null;
        for (int i = 0; i < job.n(); i++) seqs.add(new Seq(job, i, now, shared));
        synchronized (waiting) {
            if (waiting.size() + seqs.size() > config.maxQueue())
                throw new ApiException(429, "rate_limit_error", "queue_full", null,
                        "the server is busy (" + waiting.size() + " sequences waiting); retry later");
            waiting.addAll(seqs);
        }
        metrics.queueDepth.labelValues(name).set(waiting.size());
        return new Handle(seqs);
    }

    private void loop() {
        while (!closed) {
            try {
                step();
            } catch (InterruptedException e) {
                return;
            } catch (Throwable t) {
                // A failure inside a batched step: every running sequence is lost, the engine carries on.
                for (Seq s : running) s.fail(new ApiException(500, "server_error", "internal_error", null, "generation failed"));
                running.clear();
                runningCount = 0;
            }
        }
    }

    private void step() throws InterruptedException {
        long now = System.nanoTime();
        running.removeIf(s -> s.dropIfDead(now));
        // Prefills stall the sequences decoding; with none decoding, every waiting prompt that fits is admitted
        // (including those arriving while the first ones are prefilled).
        int admitted = 0, budget = running.isEmpty() ? config.maxBatch() : config.maxPrefillsPerStep();
        while (true) {
            List<Seq> group = new ArrayList<>();
            while (running.size() + group.size() < config.maxBatch() && admitted + group.size() < budget) {
                Seq s = running.isEmpty() && admitted == 0 && group.isEmpty() ? waiting.poll(50, TimeUnit.MILLISECONDS) : waiting.poll();
                if (s == null) break;
                if (!s.dropIfDead(System.nanoTime())) group.add(s);
                else if (s.shared != null) s.shared.admitted();
            }
            if (group.isEmpty()) break;
            admitted += group.size();
            prefill(group);
        }
        metrics.queueDepth.labelValues(name).set(waiting.size());
        metrics.batchSize.labelValues(name).set(running.size());
        runningCount = running.size();
        if (running.isEmpty()) return;
        // One model call: decoding sequences first (their last sampled token), then the prompts admitted above.
        List<Seq> order = new ArrayList<>(running.size());
        List<Qwen25VLModel.Sequence> decoding = new ArrayList<>(running.size());
        int[] tokens = new int[running.size()];
        List<Tensor> promptRows = new ArrayList<>();
        for (Seq s : running)
            if (s.promptRow == null) {
                tokens[decoding.size()] = s.nextToken;
                decoding.add(s.kv);
                order.add(s);
            }
        for (Seq s : running)
            if (s.promptRow != null) {
                promptRows.add(s.promptRow);
                s.promptRow = null;
                order.add(s);
            }
        maxBatchSeen = Math.max(maxBatchSeen, order.size());
        float[] logits = logitsBuffer = vlm.model().decodeBatchLogits(decoding, Arrays.copyOf(tokens, decoding.size()), promptRows, logitsBuffer);
        steps++;
        List<Seq> next = new ArrayList<>(order.size());
        for (int i = 0; i < order.size(); i++) {
            Seq s = order.get(i);
            int tok = s.sampleAndEmit(logits, i * vocab, vocab);
            if (tok >= 0) {
                s.nextToken = tok;
                next.add(s);
            } else {
                s.kv = null;
            }
        }
        running.clear();
        running.addAll(next);
        runningCount = running.size();
    }

    /** Prompts this short (text only) are prefilled side by side when several are admitted together. */
    private static final int SHORT_PROMPT = 64;

    /**
     * Prefills the admitted sequences and adds those that succeed to the running batch. Short text prompts are
     * handed to the backend together ({@link dev.vlm4j.compute.Backend#runIndependent}: on the CPU, one prompt per
     * worker when there are enough of them, which saves the per-operation synchronisation that dominates small
     * prefills); the others run one at a time. Of the choices of one request, only the first admitted runs the
     * prompt; the others copy its cache. Listener calls stay on the engine thread.
     */
    private void prefill(List<Seq> group) {
        List<Seq> side = new ArrayList<>(), alone = new ArrayList<>(), copies = new ArrayList<>();
        java.util.Set<SharedPrompt> leading = java.util.Collections.newSetFromMap(new java.util.IdentityHashMap<>());
        for (Seq s : group) {
            if (s.shared != null && (s.shared.source != null || !leading.add(s.shared))) copies.add(s); // another choice runs it
            else (s.isShortText() ? side : alone).add(s);
        }
        vlm.model().backend().runIndependent(side.size(), i -> side.get(i).runPrefill());
        for (Seq s : alone) s.runPrefill();
        for (List<Seq> ran : List.of(side, alone))
            for (Seq s : ran) if (s.shared != null && s.kv != null) s.shared.prefilled(s);
        for (Seq s : copies) s.copyPrefill();
        for (Seq s : group) if (s.finishPrefill()) running.add(s);
    }

    /** The prompt of a request with n > 1, prefilled once for all its choices (engine thread only). */
    private static final class SharedPrompt {
        private int unadmitted;
        /** The sequence of the choice that ran the prompt; its first prompt-length tokens are the prompt. */
        Qwen25VLModel.Sequence source;
        Tensor promptRow;

        SharedPrompt(int n) { this.unadmitted = n; }

        void prefilled(Seq s) {
            source = s.kv;
            promptRow = s.promptRow;
        }

        /** One more choice admitted or dropped; after the last, the prompt's cache is no longer held here. */
        void admitted() {
            if (--unadmitted == 0) {
                source = null;
                promptRow = null;
            }
        }
    }

    /** Stops the engine thread; waiting and running requests get a 503. Does not close the model. */
    @Override
    public void close() {
        closed = true;
        thread.interrupt();
        try {
            thread.join(10_000);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
        ApiException e = new ApiException(503, "server_error", "shutting_down", null, "the server is shutting down");
        for (Seq s; (s = waiting.poll()) != null; ) s.fail(e);
        for (Seq s : running) s.fail(e);
        running.clear();
        runningCount = 0;
    }

    /** One sequence (one choice of one request). Touched by the engine thread only, except {@link #cancelled}. */
    private final class Seq {
        final Job job;
        final int choice;
        final SharedPrompt shared;
        final long submitted, deadline;
        volatile boolean cancelled;
        boolean done;
        Qwen25VLModel.Sequence kv;
        /** After prefill, until the next model call: the last prompt row, whose logits give the first token. */
        Tensor promptRow;
        /** The token sampled last, to append at the next decode step. */
        int nextToken;
        /** What {@link #runPrefill} threw, for {@link #finishPrefill} to report. */
        Throwable prefillError;
        Sampler sampler;
        int[] history;
        int count, generated;
        long lastToken;
        StreamDecoder decoder;
        StopStrings stops;
        ReasoningStream reasoning;

        Seq(Job job, int choice, long now, SharedPrompt shared) {
            this.job = job;
            this.choice = choice;
            this.shared = shared;
            this.submitted = now;
            this.deadline = now + job.timeoutNanos();
        }

        /** True (and the sequence is retired) when cancelled or past its deadline. */
        boolean dropIfDead(long now) {
            if (done) return true;
            if (cancelled) {
                done = true;
                kv = null;
                promptRow = null;
                return true;
            }
            if (now - deadline > 0) {
                fail(new ApiException(503, "timeout_error", "timeout", null, "the request timed out"));
                return true;
            }
            return false;
        }

        void fail(ApiException e) {
            if (done) return;
            done = true;
            kv = null;
            promptRow = null;
            job.listener().onError(choice, e);
        }

        boolean isShortText() {
            VisionLanguageModel.Prompt p = job.prompt();
            return p.ids().length <= SHORT_PROMPT && (p.images() == null || p.images().grids().isEmpty())
                    && (p.videos() == null || p.videos().grids().isEmpty());
        }

        /** Runs the prompt through the decoder; touches only this sequence (it may run beside other prefills). */
        void runPrefill() {
            int[] ids = job.prompt().ids();
            prefills.incrementAndGet();
            try {
                kv = vlm.model().newSequence(ids.length + Math.min(job.sampling().maxNewTokens(), 8192));
                Tensor hidden = vlm.model().prefill(kv, ids, job.prompt().images(), job.prompt().videos(), null);
                promptRow = vlm.model().lastHiddenRow(hidden);
            } catch (RuntimeException | OutOfMemoryError e) {
                kv = null;
                prefillError = e;
            }
        }

        /** Starts from the shared prompt another choice ran (or runs it when that failed). */
        void copyPrefill() {
            if (shared.source == null) {
                runPrefill();
                return;
            }
            int n = job.prompt().ids().length;
            try {
                kv = vlm.model().copyPrefix(shared.source, n, n + Math.min(job.sampling().maxNewTokens(), 8192));
                promptRow = shared.promptRow;
            } catch (RuntimeException | OutOfMemoryError e) {
                kv = null;
                prefillError = e;
            }
        }

        /** After {@link #runPrefill} or {@link #copyPrefill}, on the engine thread: false (and the listener told) when it failed. */
        boolean finishPrefill() {
            if (shared != null) shared.admitted();
            Throwable e = prefillError;
            prefillError = null;
            if (e instanceof IllegalArgumentException) {
                fail(ApiException.badRequest("messages", e.getMessage()));
                return false;
            } else if (e != null) {
                fail(new ApiException(500, "server_error", "internal_error", null, "prefill failed"));
                return false;
            }
            SamplingOptions so = job.sampling();
            if (so.seed() != null && choice > 0) so = so.toBuilder().seed(so.seed() + choice).build();
            int[] ids = job.prompt().ids();
            metrics.promptTokens.labelValues(name).inc(ids.length);
            sampler = new Sampler(so);
            history = Arrays.copyOf(ids, ids.length + so.maxNewTokens());
            count = ids.length;
            decoder = new StreamDecoder(vlm.tokenizer(), true);
            stops = new StopStrings(so.stop());
            reasoning = new ReasoningStream(job.startInReasoning());
            return true;
        }

        /**
         * Samples from its next-token logits {@code logits[offset, offset + vocab)} and streams the result; returns the
         * token to feed next, or -1 when done.
         */
        int sampleAndEmit(float[] logits, int offset, int vocab) {
            int tok = sampler.next(logits, offset, vocab, history, count);
            long now = System.nanoTime();
            if (generated == 0) metrics.timeToFirstToken.labelValues(name).observe((now - submitted) / 1e9);
            else metrics.interTokenLatency.labelValues(name).observe((now - lastToken) / 1e9);
            lastToken = now;
            if (isEos(tok)) {
                finish("stop", null);
                return -1;
            }
            List<TokenLogprob> lp = job.topLogprobs() >= 0 ? List.of(logprobOf(Arrays.copyOfRange(logits, offset, offset + vocab), tok)) : null;
            generated++;
            metrics.generatedTokens.labelValues(name).inc();
            history[count++] = tok;
            StopStrings.Chunk c = stops.append(decoder.push(tok));
            if (c.stopped()) {
                emit(c.text(), lp);
                finish("stop", null);
                return -1;
            }
            if (generated >= sampler.options().maxNewTokens()) {
                emit(c.text(), lp);
                finish("length", null);
                return -1;
            }
            emit(c.text(), lp);
            return tok;
        }

        private TokenLogprob logprobOf(float[] logits, int tok) {
            List<TokenLogprob> top = new ArrayList<>();
            for (Sampler.TokenLogprob t : Sampler.topLogprobs(logits, job.topLogprobs()))
                top.add(new TokenLogprob(tokenText(t.token()), t.token(), t.logprob(), List.of()));
            return new TokenLogprob(tokenText(tok), tok, Sampler.logprob(logits, tok), top);
        }

        private String tokenText(int id) { return vlm.tokenizer().decode(new int[]{id}, false); }

        private void emit(String text, List<TokenLogprob> lp) {
            StringBuilder r = new StringBuilder(), c = new StringBuilder();
            if (!text.isEmpty()) collect(reasoning.feed(text), r, c);
            if (r.isEmpty() && c.isEmpty() && lp == null) return;
            job.listener().onDelta(choice, r.toString(), c.toString(), lp == null ? List.of() : lp);
        }

        private void finish(String reason, List<TokenLogprob> lp) {
            StringBuilder r = new StringBuilder(), c = new StringBuilder();
            if (!stops.stopped()) {
                String rest = stops.append(decoder.finish()).text();
                if (!stops.stopped()) rest += stops.finish();
                collect(reasoning.feed(rest), r, c);
            }
            collect(reasoning.finish(), r, c);
            if (!r.isEmpty() || !c.isEmpty() || lp != null)
                job.listener().onDelta(choice, r.toString(), c.toString(), lp == null ? List.of() : lp);
            done = true;
            kv = null;
            job.listener().onFinish(choice, reason, job.prompt().ids().length, generated);
        }

        private static void collect(List<ReasoningStream.Event> events, StringBuilder r, StringBuilder c) {
            for (ReasoningStream.Event e : events) (e.kind() == ReasoningStream.Kind.REASONING ? r : c).append(e.text());
        }

        private boolean isEos(int tok) {
            for (int e : eos) if (e == tok) return true;
            return false;
        }
    }
}
