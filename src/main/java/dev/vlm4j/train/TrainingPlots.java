package dev.vlm4j.train;

import org.knowm.xchart.BitmapEncoder;
import org.knowm.xchart.XYChart;
import org.knowm.xchart.XYChartBuilder;
import org.knowm.xchart.style.markers.SeriesMarkers;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The run's loss curves as ms-swift draws them: {@code images/train_loss.png} (loss against global step) and, when
 * evaluation ran, {@code images/eval_loss.png}; rendered headless with XChart.
 */
public final class TrainingPlots {
    private TrainingPlots() {}

    /** Draws the curves from logging.jsonl rows; a failure to draw is reported to {@code log}, never thrown. */
    public static void write(Path runDir, List<Map<String, Object>> history, Consumer<String> log) {
        System.setProperty("java.awt.headless", "true");
        try {
            Path images = runDir.resolve("images");
            Files.createDirectories(images);
            plot(history, "loss", "train/loss", images.resolve("train_loss.png"));
            plot(history, "eval_loss", "eval/loss", images.resolve("eval_loss.png"));
        } catch (Exception | LinkageError e) {
            log.accept("could not draw the loss curves: " + e);
        }
    }

    private static void plot(List<Map<String, Object>> history, String key, String title, Path file) throws Exception {
        List<Double> xs = new ArrayList<>(), ys = new ArrayList<>();
        for (Map<String, Object> row : history) {
            if (!(row.get(key) instanceof Number y)) continue;
            String gs = String.valueOf(row.get("global_step/max_steps"));
            xs.add(Double.parseDouble(gs.substring(0, gs.indexOf('/'))));
            ys.add(y.doubleValue());
        }
        if (xs.isEmpty()) return;
        XYChart c = new XYChartBuilder().width(800).height(500).title(title).xAxisTitle("global step").yAxisTitle(key).build();
        c.getStyler().setLegendVisible(false);
        c.addSeries(key, xs, ys).setMarker(xs.size() > 50 ? SeriesMarkers.NONE : SeriesMarkers.CIRCLE);
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp.png");
        BitmapEncoder.saveBitmap(c, tmp.toString(), BitmapEncoder.BitmapFormat.PNG);
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
    }
}
