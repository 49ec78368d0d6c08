package dev.vlm4j.cli;

import picocli.CommandLine;
import picocli.CommandLine.Command;

/** Entry point of the {@code vlm4j} command line. Each sub-command lives in its own class in this package. */
@Command(name = "vlm4j", mixinStandardHelpOptions = true, version = "vlm4j 0.1.0",
        description = "Run, fine-tune and serve MiMo-VL / Qwen2.5-VL vision-language models from Java.",
        subcommands = {
                CommandLine.HelpCommand.class,
                TokenizeCommand.class,
                TemplateCommand.class,
                TraceCommand.class,
                InferCommand.class,
                ChatCommand.class,
                PreprocessCommand.class,
                SftCommand.class,
                ExportCommand.class,
                ServeCommand.class,
                DownloadCommand.class,
                InitCommand.class,
                BenchCommand.class,
        })
public final class Main {
    public static void main(String[] args) {
        System.exit(run(args));
    }

    /** Runs the CLI and returns its exit code (used by tests to drive the CLI in-process). */
    public static int run(String... args) {
        CommandLine cl = new CommandLine(new Main());
        cl.setExecutionExceptionHandler(new ErrorHandler());
        return cl.execute(args);
    }
}
