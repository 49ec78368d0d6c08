package dev.vlm4j.train;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.w3c.dom.Document;
import org.w3c.dom.Element;

import javax.xml.parsers.DocumentBuilderFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;

import static org.junit.jupiter.api.Assertions.*;

/** The loss curves: PNG through XChart, and the SVG fallback for servers where Java2D has no fonts. */
class TrainingPlotsTest {
    @TempDir Path tmp;

    private static List<Map<String, Object>> history() {
        List<Map<String, Object>> h = new ArrayList<>();
        for (int s = 5; s <= 50; s += 5) {
            Map<String, Object> row = new LinkedHashMap<>();
            row.put("loss", 10.0 / s);
            row.put("global_step/max_steps", s + "/50");
            h.add(row);
            if (s % 25 == 0) h.add(new LinkedHashMap<>(Map.of("eval_loss", 1.0 / s, "global_step/max_steps", s + "/50")));
        }
        return h;
    }

    @Test
    void svgFallbackIsAWellFormedCurveOfEveryRow() throws Exception {
        Path f = tmp.resolve("train_loss.svg");
        assertTrue(TrainingPlots.writeSvg(history(), "loss", "train/loss", f));
        Document d = DocumentBuilderFactory.newInstance().newDocumentBuilder().parse(f.toFile());
        Element poly = (Element) d.getElementsByTagName("polyline").item(0);
        String[] pts = poly.getAttribute("points").trim().split("\\s+");
        assertEquals(10, pts.length, "one point per logged loss");
        // the loss falls, so the curve rises on screen (y grows downwards): first point lowest on screen, last highest
        double yFirst = Double.parseDouble(pts[0].split(",")[1]), yLast = Double.parseDouble(pts[9].split(",")[1]);
        assertTrue(yFirst < yLast, "first point y " + yFirst + " above last " + yLast);
        assertTrue(Files.readString(f).contains(">train/loss<"), "title");
        assertFalse(TrainingPlots.writeSvg(history(), "no_such_key", "x", tmp.resolve("none.svg")), "nothing to draw");
        assertFalse(Files.exists(tmp.resolve("none.svg")));
        assertTrue(TrainingPlots.writeSvg(history(), "eval_loss", "eval/loss", tmp.resolve("eval.svg")));
    }

    @Test
    void pngOrSvgIsWrittenAndNothingThrows() {
        List<String> log = new ArrayList<>();
        TrainingPlots.write(tmp, history(), log::add);
        boolean png = Files.isRegularFile(tmp.resolve("images/train_loss.png")), svg = Files.isRegularFile(tmp.resolve("images/train_loss.svg"));
        assertTrue(png || svg, "no curve written; log " + log);
        if (!png) assertTrue(log.getFirst().contains("train_loss.svg"), "the log names the fallback: " + log);
        try (var files = Files.list(tmp.resolve("images"))) {
            assertTrue(files.noneMatch(f -> f.getFileName().toString().contains(".tmp")), "a temporary file was left behind");
        } catch (java.io.IOException e) {
            throw new AssertionError(e);
        }
    }
}
