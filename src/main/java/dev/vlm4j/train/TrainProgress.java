package dev.vlm4j.train;

import me.tongfei.progressbar.ProgressBar;
import me.tongfei.progressbar.ProgressBarBuilder;
import me.tongfei.progressbar.ProgressBarStyle;

/**
 * A training progress bar on an interactive terminal ({@code System.console() != null} and not
 * {@code --disable_tqdm}); elsewhere (pipes, files, tests) nothing, and the trainer prints plain log lines.
 */
public final class TrainProgress implements AutoCloseable {
    private final ProgressBar bar;

    private TrainProgress(ProgressBar bar) { this.bar = bar; }

    /** A bar from {@code start} to {@code total} steps when on a terminal, else an inactive one. */
    public static TrainProgress open(SftArgs a, int total, int start) {
        if (a.disableTqdm || System.console() == null) return new TrainProgress(null);
        ProgressBar b = new ProgressBarBuilder().setTaskName("Train").setInitialMax(total).startsFrom(start, java.time.Duration.ZERO)
                .setStyle(ProgressBarStyle.ASCII).setUpdateIntervalMillis(250).showSpeed().setUnit(" it", 1).build();
        return new TrainProgress(b);
    }

    /** Whether a bar is shown. */
    public boolean active() { return bar != null; }

    /** Advances to {@code done} steps, showing the step's loss. */
    public void step(int done, double loss) {
        if (bar == null) return;
        bar.stepTo(done);
        bar.setExtraMessage(String.format(java.util.Locale.ROOT, "loss %.4f", loss));
    }

    /** Prints a line above the bar (log rows). */
    public void message(String line) {
        if (bar == null) return;
        System.err.print("\r\033[K");
        System.err.println(line);
    }

    @Override
    public void close() { if (bar != null) bar.close(); }
}
