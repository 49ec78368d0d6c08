package dev.vlm4j.cli;

import picocli.CommandLine;

/** Turns exceptions into one clear line on stderr and a non-zero exit code, instead of a stack trace. */
final class ErrorHandler implements CommandLine.IExecutionExceptionHandler {
    @Override
    public int handleExecutionException(Exception ex, CommandLine cl, CommandLine.ParseResult parseResult) {
        String msg = ex.getMessage() == null ? ex.toString() : ex.getMessage();
        cl.getErr().println("vlm4j " + cl.getCommandName() + ": error: " + msg);
        if (System.getenv("VLM4J_DEBUG") != null) ex.printStackTrace(cl.getErr());
        return 2;
    }
}
