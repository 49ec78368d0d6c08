package dev.vlm4j.compute.cuda;

/** A CUDA driver, cuBLASLt or NVRTC call failed; {@link #code()} is the library's status code. */
public final class CudaException extends RuntimeException {
    private final int code;

    public CudaException(String message, int code) {
        super(message);
        this.code = code;
    }

    public int code() { return code; }
}
