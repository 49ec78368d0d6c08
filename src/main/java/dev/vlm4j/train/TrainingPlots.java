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
 * evaluation ran, {@code images/eval_loss.png}; rendered headless with XChart, or as SVG where Java2D has no fonts.
 */
public final class TrainingPlots {
    private TrainingPlots() {}

    /**
     * Draws the curves from logging.jsonl rows; a failure to draw is reported to {@code log}, never thrown. Where
     * Java2D cannot render text (a server without fonts: "Fontconfig head is null"), the same curves are written as
     * SVG ({@code images/train_loss.svg}; the viewer renders the text) and the log says so.
     */
    public static void write(Path runDir, List<Map<String, Object>> history, Consumer<String> log) {
        System.setProperty("java.awt.headless", "true");
        Path images = runDir.resolve("images");
        try {
            Files.createDirectories(images);
            plot(history, "loss", "train/loss", images.resolve("train_loss.png"));
            plot(history, "eval_loss", "eval/loss", images.resolve("eval_loss.png"));
        } catch (Exception | LinkageError e) {
            try {
                boolean any = writeSvg(history, "loss", "train/loss", images.resolve("train_loss.svg"));
                writeSvg(history, "eval_loss", "eval/loss", images.resolve("eval_loss.svg"));
                log.accept("could not draw the PNG loss curves (" + e + ")" + (any ? "; wrote " + images.resolve("train_loss.svg") + " instead" : ""));
            } catch (Exception | LinkageError e2) {
                log.accept("could not draw the loss curves: " + e + "; SVG: " + e2);
            }
        }
    }

    /** (global step, value) of every row that has {@code key}. */
    private static List<double[]> points(List<Map<String, Object>> history, String key) {
        List<double[]> out = new ArrayList<>();
        for (Map<String, Object> row : history) {
            if (!(row.get(key) instanceof Number y)) continue;
            String gs = String.valueOf(row.get("global_step/max_steps"));
            out.add(new double[]{Double.parseDouble(gs.substring(0, gs.indexOf('/'))), y.doubleValue()});
        }
        return out;
    }

    /**
     * The curve as a self-contained SVG (axes, 5 ticks each, the title), without Java2D; false when no row has
     * {@code key}. Written through a temporary file and a rename.
     */
    static boolean writeSvg(List<Map<String, Object>> history, String key, String title, Path file) throws java.io.IOException {
        List<double[]> p = points(history, key);
        if (p.isEmpty()) return false;
        double x0 = p.getFirst()[0], x1 = p.getLast()[0], y0 = Double.MAX_VALUE, y1 = -Double.MAX_VALUE;
        for (double[] q : p) { y0 = Math.min(y0, q[1]); y1 = Math.max(y1, q[1]); }
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) { y0 -= 0.5; y1 += 0.5; }
        int w = 800, h = 500, l = 70, r = 20, t = 40, b = 50;
        double sx = (w - l - r) / (x1 - x0), sy = (h - t - b) / (y1 - y0);
        StringBuilder s = new StringBuilder();
        s.append(String.format(java.util.Locale.ROOT, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">%n", w, h));
        s.append(String.format(java.util.Locale.ROOT, "<rect width=\"%d\" height=\"%d\" fill=\"white\"/>%n", w, h));
        s.append(String.format(java.util.Locale.ROOT, "<text x=\"%d\" y=\"24\" text-anchor=\"middle\" font-size=\"16\">%s</text>%n", w / 2, title));
        s.append(String.format(java.util.Locale.ROOT, "<path d=\"M%d %d V%d H%d\" stroke=\"black\" fill=\"none\"/>%n", l, t, h - b, w - r));
        for (int i = 0; i <= 4; i++) {
            double xv = x0 + (x1 - x0) * i / 4, yv = y0 + (y1 - y0) * i / 4;
            double px = l + (xv - x0) * sx, py = h - b - (yv - y0) * sy;
            s.append(String.format(java.util.Locale.ROOT, "<text x=\"%.1f\" y=\"%d\" text-anchor=\"middle\">%s</text>%n", px, h - b + 18, tick(xv)));
            s.append(String.format(java.util.Locale.ROOT, "<text x=\"%d\" y=\"%.1f\" text-anchor=\"end\">%s</text>%n", l - 6, py + 4, tick(yv)));
            s.append(String.format(java.util.Locale.ROOT, "<path d=\"M%d %.1f H%d\" stroke=\"#ddd\"/>%n", l + 1, py, w - r));
        }
        s.append(String.format(java.util.Locale.ROOT, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">global step</text>%n", (l + w - r) / 2, h - 12));
        s.append(String.format(java.util.Locale.ROOT, "<text x=\"16\" y=\"%d\" text-anchor=\"middle\" transform=\"rotate(-90 16 %d)\">%s</text>%n",
                (t + h - b) / 2, (t + h - b) / 2, key));
        s.append("<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"2\" points=\"");
        for (double[] q : p) s.append(String.format(java.util.Locale.ROOT, "%.1f,%.1f ", l + (q[0] - x0) * sx, h - b - (q[1] - y0) * sy));
        s.append("\"/>\n</svg>\n");
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp");
        Files.writeString(tmp, s);
        Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        return true;
    }

    private static String tick(double v) {
        return Math.abs(v) >= 1000 || v == Math.rint(v) ? String.format(java.util.Locale.ROOT, "%.0f", v)
                : String.format(java.util.Locale.ROOT, "%.3g", v);
    }

    private static void plot(List<Map<String, Object>> history, String key, String title, Path file) throws Exception {
        List<Double> xs = new ArrayList<>(), ys = new ArrayList<>();
        for (double[] q : points(history, key)) {
            xs.add(q[0]);
            ys.add(q[1]);
        }
        if (xs.isEmpty()) return;
        XYChart c = new XYChartBuilder().width(800).height(500).title(title).xAxisTitle("global step").yAxisTitle(key).build();
        c.getStyler().setLegendVisible(false);
        c.addSeries(key, xs, ys).setMarker(xs.size() > 50 ? SeriesMarkers.NONE : SeriesMarkers.CIRCLE);
        Path tmp = file.resolveSibling(file.getFileName() + ".tmp.png");
        try {
            BitmapEncoder.saveBitmap(c, tmp.toString(), BitmapEncoder.BitmapFormat.PNG);
            Files.move(tmp, file, java.nio.file.StandardCopyOption.REPLACE_EXISTING, java.nio.file.StandardCopyOption.ATOMIC_MOVE);
        } finally {
            Files.deleteIfExists(tmp);   // a failed render leaves no partial file behind
        }
    }
}
