package dev.vlm4j.preprocess.image;

/** An image (or video frame) could not be read or preprocessed; the message names the source and the reason. */
public class ImageException extends RuntimeException {
    public ImageException(String message) {
        super(message);
    }

    public ImageException(String message, Throwable cause) {
        super(message, cause);
    }
}
