package dev.vlm4j.trace;

import dev.vlm4j.Fixtures;
import dev.vlm4j.cli.Main;
import dev.vlm4j.tensor.Tensor;
import dev.vlm4j.tensor.safetensors.SafeTensorsFile;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.TestFactory;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.*;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * End-to-end parity: {@code vlm4j trace} on every case folder under fixtures/cases (whatever cases are there),
 * compared with the reference tensors under the README's agreement. Runs through the CLI, so the chat template,
 * tokenizer, image/video preprocessing, vision tower and language model are all exercised.
 */
class TraceParityTest {
    @TempDir Path tmp;

    @TestFactory
    Stream<DynamicTest> everyFixtureCase() throws Exception {
        Path cases = Fixtures.cases();
        List<Path> dirs;
        try (Stream<Path> s = Files.list(cases)) {
            dirs = s.filter(d -> Files.isRegularFile(d.resolve("case.json"))).sorted().toList();
        }
        assertFalse(dirs.isEmpty(), "no cases under " + cases);
        return dirs.stream().map(d -> DynamicTest.dynamicTest(d.getFileName().toString(), () -> check(d)));
    }

    private void check(Path caseDir) throws Exception {
        Path out = tmp.resolve(caseDir.getFileName() + ".safetensors");
        int rc = Main.run("trace", "--model", Fixtures.tinyModel().toString(), "--case", caseDir.toString(), "--out", out.toString());
        assertEquals(0, rc, "vlm4j trace exit code for " + caseDir.getFileName());
        try (SafeTensorsFile ref = SafeTensorsFile.open(caseDir.resolve("tensors.safetensors"));
             SafeTensorsFile got = SafeTensorsFile.open(out)) {
            Map<String, Tensor> r = new LinkedHashMap<>(), g = new LinkedHashMap<>();
            for (String n : ref.names()) r.put(n, ref.get(n));
            for (String n : got.names()) g.put(n, got.get(n));
            List<TraceComparison.Check> checks = TraceComparison.compare(r, g);
            List<TraceComparison.Check> failed = checks.stream().filter(c -> !c.ok()).toList();
            StringBuilder sb = new StringBuilder();
            checks.forEach(c -> sb.append("\n  ").append(c));
            checks.stream().filter(c -> c.name().startsWith("grad.") && !c.name().endsWith(".rows") || c.name().equals("train_loss"))
                    .forEach(c -> System.out.println(caseDir.getFileName() + ": " + c));
            if (r.keySet().stream().anyMatch(n -> n.startsWith("grad.")))
                assertTrue(checks.stream().anyMatch(c -> c.name().startsWith("grad.")), "no gradient checks for " + caseDir.getFileName());
            assertTrue(failed.isEmpty(), caseDir.getFileName() + ": " + failed.size() + " of " + checks.size() + " checks failed:" + sb);
            assertTrue(checks.size() >= 5, "too few checks for " + caseDir.getFileName() + sb);
        }
    }
}
