package dev.vlm4j.preprocess.video;

import dev.vlm4j.preprocess.image.ImageException;

/** A video could not be read, sampled or preprocessed; the message names the source and the reason. */
public class VideoException extends ImageException {
    public VideoException(String message) {
        super(message);
    }

    public VideoException(String message, Throwable cause) {
        super(message, cause);
    }
}
