package dev.vlm4j.compute.cuda;

import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.LauncherDiscoveryRequest;
import org.junit.platform.launcher.TestExecutionListener;
import org.junit.platform.launcher.TestIdentifier;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.engine.TestExecutionResult;

import java.io.PrintWriter;

import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;
import static org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder.request;

/**
 * Runs the CUDA test classes without Maven (on a GPU host that has only a JRE):
 * {@code java -cp classes:test-classes:jars dev.vlm4j.compute.cuda.GpuTestMain [class names]}. Prints each test's
 * outcome and a summary; exits 1 when something failed.
 */
public final class GpuTestMain {
    public static void main(String[] args) throws Exception {
        String[] names = args.length > 0 ? args : new String[]{CudaBackendTest.class.getName(), CudaModelParityTest.class.getName()};
        var b = request();
        for (String n : names) b.selectors(selectClass(Class.forName(n)));
        LauncherDiscoveryRequest req = b.build();
        Launcher launcher = LauncherFactory.create();
        SummaryGeneratingListener summary = new SummaryGeneratingListener();
        TestExecutionListener printer = new TestExecutionListener() {
            long t0;
            @Override public void executionStarted(TestIdentifier id) { t0 = System.nanoTime(); }
            @Override public void executionSkipped(TestIdentifier id, String reason) {
                System.out.println("SKIP " + id.getDisplayName() + ": " + reason);
            }
            @Override public void executionFinished(TestIdentifier id, TestExecutionResult r) {
                if (!id.isTest() && r.getStatus() == TestExecutionResult.Status.SUCCESSFUL) return;
                System.out.printf("%s %s (%.1f s)%s%n", r.getStatus(), id.getUniqueId().replaceAll(".*class:", ""),
                        (System.nanoTime() - t0) / 1e9, r.getThrowable().map(t -> "\n    " + t).orElse(""));
            }
        };
        launcher.execute(req, summary, printer);
        summary.getSummary().printTo(new PrintWriter(System.out));
        summary.getSummary().printFailuresTo(new PrintWriter(System.out), 12);
        System.exit(summary.getSummary().getTotalFailureCount() == 0 ? 0 : 1);
    }
}
