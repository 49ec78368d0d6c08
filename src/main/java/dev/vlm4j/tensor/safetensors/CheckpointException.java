package dev.vlm4j.tensor.safetensors;

import java.nio.file.Path;

/** A checkpoint or tensor file that cannot be used; the message names the file and, where possible, the fix. */
public class CheckpointException extends RuntimeException {
    public CheckpointException(String message) { super(message); }
    public CheckpointException(String message, Throwable cause) { super(message, cause); }

    public static CheckpointException at(Path file, String problem) {
        return new CheckpointException(file + ": " + problem);
    }
}
