package dev.vlm4j.serve;

import jakarta.servlet.http.HttpServletRequest;
import org.eclipse.jetty.ee10.servlet.ServletContextRequest;
import org.eclipse.jetty.io.AbstractEndPoint;
import org.eclipse.jetty.io.EndPoint;
import org.eclipse.jetty.util.BufferUtil;
import org.eclipse.jetty.util.Callback;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.concurrent.CancellationException;
import java.util.concurrent.TimeoutException;

/**
 * Tells whether the client of a request still being handled has gone away, before anything was written (issue #7:
 * a non-streaming chat request writes nothing until generation ends, so a failed write cannot tell).
 * <p>
 * Once the request body has been read, Jetty (12) does not read from an HTTP/1.1 connection until the response is
 * complete, so it would not notice the client closing. This watch registers its own read interest on the connection's
 * {@link EndPoint}: when the socket turns readable it reads; end of stream (or a read error) means the client is gone.
 * Bytes that do arrive can only be a pipelined next request, which cannot be handed back to Jetty: the watch then stops
 * and {@link #pipelined()} asks the caller to answer with {@code Connection: close} (the client retries the rest, as
 * HTTP/1.1 allows). {@link #close()} must be called before the response is written, so that Jetty's own read interest
 * for the next request does not collide with this one. Without a Jetty endpoint the watch never reports the client gone.
 */
final class ClientWatch implements Callback, AutoCloseable {
    private final EndPoint endPoint;
    private final Runnable onGone;
    private final ByteBuffer buffer = BufferUtil.allocate(4096);
    private boolean closed, registered; // guarded by this
    private volatile boolean gone, pipelined;

    private ClientWatch(EndPoint endPoint, Runnable onGone) {
        this.endPoint = endPoint;
        this.onGone = onGone;
    }

    /**
     * Starts watching the connection of {@code req} (whose body must have been read entirely); {@code onGone} runs
     * once, on a Jetty thread and without blocking, when the client is found gone.
     */
    static ClientWatch start(HttpServletRequest req, Runnable onGone) {
        EndPoint ep = null;
        try {
            ServletContextRequest r = ServletContextRequest.getServletContextRequest(req);
            if (r != null && r.getConnectionMetaData().getHttpVersion().getVersion() <= 11)
                ep = r.getConnectionMetaData().getConnection().getEndPoint();
        } catch (RuntimeException ignored) {
            // not served by Jetty's HTTP/1.x connection: no watch
        }
        ClientWatch w = new ClientWatch(ep, onGone);
        w.register();
        return w;
    }

    /** True once the client closed the connection (or it failed). */
    boolean gone() { return gone; }

    /** True when the client sent more bytes (a pipelined request), which were consumed: close after the response. */
    boolean pipelined() { return pipelined; }

    private synchronized void register() {
        if (closed || registered || gone || pipelined || endPoint == null) return;
        registered = endPoint.tryFillInterested(this);
    }

    /** The connection is readable: end of stream means the client is gone. */
    @Override
    public void succeeded() {
        synchronized (this) {
            registered = false;
            if (closed) return;
            try {
                BufferUtil.clear(buffer);
                int n = endPoint.fill(buffer);
                if (n < 0) gone = true;
                else if (n > 0) pipelined = true;
            } catch (IOException e) {
                gone = true;
            }
        }
        if (gone) onGone.run();
        else register();
    }

    @Override
    public void failed(Throwable x) {
        synchronized (this) {
            registered = false;
            if (closed) return;
            // An idle timeout fails the read interest without closing anything: keep watching.
            if (!(x instanceof TimeoutException) || !endPoint.isOpen()) gone = true;
        }
        if (gone) onGone.run();
        else register();
    }

    @Override
    public InvocationType getInvocationType() { return InvocationType.NON_BLOCKING; }

    /** Stops watching (withdraws the read interest); call before writing the response. */
    @Override
    public synchronized void close() {
        if (closed) return;
        closed = true;
        if (registered && endPoint instanceof AbstractEndPoint a) a.getFillInterest().onFail(new CancellationException("request done"));
        registered = false;
    }
}
