package dev.vlm4j.serve;

/**
 * An error answered to a client in OpenAI's error JSON: {@code {"error":{"message","type","param","code"}}} with an
 * HTTP status. Messages are written for the client; they never carry stack traces or server paths beyond what the
 * client sent.
 */
public final class ApiException extends RuntimeException {
    private final int status;
    private final String type;
    private final String param;
    private final String code;

    public ApiException(int status, String type, String code, String param, String message) {
        super(message, null, false, false);
        this.status = status;
        this.type = type;
        this.code = code;
        this.param = param;
    }

    /** 400 invalid_request_error. */
    public static ApiException badRequest(String param, String message) {
        return new ApiException(400, "invalid_request_error", "invalid_request", param, message);
    }

    /** 422: a well-formed request whose content cannot be processed (bytes that are not an image, too many pixels). */
    public static ApiException unprocessable(String param, String message) {
        return new ApiException(422, "invalid_request_error", "unprocessable_content", param, message);
    }

    public int status() { return status; }
    public String type() { return type; }
    public String param() { return param; }
    public String code() { return code; }
}
