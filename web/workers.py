"""gunicorn's worker classes: its own error answers as JSON; header and body timeouts.

gunicorn answers some requests before the app sees them: a malformed request line, a header too
large or too many (431), Content-Length with Transfer-Encoding (400), a bad chunk size. Its WSGI
workers write an HTML page (``Worker.handle_error`` through ``util.write_error``), its asyncio
worker ``text/plain`` (``ASGIProtocol._send_error_response``). These subclasses keep gunicorn's
decisions (status, log line, access line) and write the same status as ``{"error": ...}``.

The WSGI classes also put a deadline on the body: the client socket gets ``body_timeout``
seconds per read while the app runs, so a stalled body raises ``TimeoutError`` in the app,
which answers a JSON 408 (the asyncio worker's bridge does the same with ``asyncio``).

Over the per-worker connection cap (``max_connections``) the ``asgi`` and ``gthread`` classes
still accept a new connection, answer it a JSON 503 with ``Retry-After: 1`` and close it (a
warning line, and ``deploy_web_refused_connections_total``), rather than dropping it unanswered
or leaving it in the kernel's queue. The ``sync`` class has no cap: it handles one connection
at a time, and the others wait in the listening socket's backlog.

On SIGTERM every class stops accepting at once and tells the master (:func:`stopped_accepting`):
gunicorn's own classes notice only on their next loop turn (up to a second later), and a
model reload (web/reload.py) must not fork new workers while an old one still accepts, or a
client's answers would switch versions back and forth.
"""

from __future__ import annotations

import contextlib
import errno
import html
import json
import os
import re
import selectors
import socket
import struct
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from gunicorn.asgi import protocol as asgi_protocol
from gunicorn.workers import gasgi, gthread, sync

from deploy_modes.web.bridge import served_app
from deploy_modes.web.settings import WebSettings, load_settings

if TYPE_CHECKING:  # prometheus-client is imported by the app, after the metrics dir is set
    from prometheus_client import Counter

__all__ = [
    "REFUSED_LINGER",
    "ASGIWorker",
    "SyncWorker",
    "ThreadWorker",
    "json_error_response",
    "over_cap_response",
    "stopped_accepting",
]

_STATUS_LINE = re.compile(rb"^HTTP/1\.[01] (\d{3}) ([^\r\n]*)\r\n")
# gunicorn's HTML error page: the message sits between the heading and </body>.
_HTML_MESSAGE = re.compile(rb"</h1>\s*(.*?)\s*</body>", re.DOTALL)
# How long a refused connection is read (and its bytes dropped) after the 503 before it is
# closed: closing with a request unread would send a reset, which can destroy the 503 before
# the client reads it (RFC 9112 section 9.6; gunicorn's util.close_graceful lingers as long).
REFUSED_LINGER = 2.0


def json_error_response(status: int, reason: str, message: str, extra: str = "") -> bytes:
    """Return a whole HTTP/1.1 error response whose body is ``{"error": message}``."""
    body = json.dumps({"error": message or reason, "field": None}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"{extra}"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def over_cap_response(cap: int) -> bytes:
    """Return the JSON 503 a connection over the cap of ``cap`` per worker gets."""
    message = f"the server is at its limit of {cap} open connections per worker; retry shortly"
    return json_error_response(503, "Service Unavailable", message, "Retry-After: 1\r\n")


# The worker's heartbeat file (gunicorn's WorkerTmp: one open file shared by the master and
# the worker, written only with utime) is the acknowledgement channel: its mode, 0600 from
# mkstemp, becomes 0000 once the worker accepts no more connections.
_STOPPED_MODE = 0o000


def _say_stopped_accepting(worker: Any) -> None:
    """Tell the master, through the worker's heartbeat file, that it accepts no more."""
    with contextlib.suppress(OSError, ValueError):  # a closed file: the worker is exiting
        os.fchmod(worker.tmp.fileno(), _STOPPED_MODE)


def stopped_accepting(worker: Any) -> bool:
    """Return whether the master's ``worker`` said it accepts no more connections."""
    try:
        return os.fstat(worker.tmp.fileno()).st_mode & 0o777 == _STOPPED_MODE
    except (OSError, ValueError):  # its file is closed: the master reaped it
        return True


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class _Capture:
    """A stand-in socket that keeps what gunicorn's ``write_error`` would have sent."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking already": write_nonblock then just calls sendall

    def setblocking(self, flag: bool) -> None:
        pass

    def sendall(self, data: bytes) -> None:
        self.data += data


def _as_json(page: bytes) -> bytes | None:
    """Return gunicorn's HTML error response rewritten as JSON (None if it is not one)."""
    status = _STATUS_LINE.match(page)
    if status is None:
        return None
    found = _HTML_MESSAGE.search(page)
    message = html.unescape(found.group(1).decode("latin-1")) if found else ""
    reason = status.group(2).decode("latin-1")
    return json_error_response(int(status.group(1)), reason, message)


class _JSONErrors:
    """Mixin for gunicorn's WSGI workers: its own error pages go out as JSON."""

    def handle_error(self, req: Any, client: Any, addr: Any, exc: BaseException) -> None:
        """Let gunicorn decide, log and count the error; send its answer as JSON."""
        capture = _Capture()
        super().handle_error(req, capture, addr, exc)  # type: ignore[misc]
        answer = _as_json(capture.data) or capture.data
        try:
            client.sendall(answer)
        except OSError:
            self.log.debug("Failed to send error message.")  # type: ignore[attr-defined]


def _settings() -> WebSettings:
    return load_settings(WebSettings)  # the environment gunicorn's master read, inherited


def _receive_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound every blocking read of ``sock`` in the kernel (SO_RCVTIMEO).

    gunicorn sets the socket blocking (no Python timeout) before it parses the headers; a
    kernel receive timeout survives that, so half-sent headers end in EAGAIN, and gunicorn
    closes the connection, instead of holding a thread forever.
    """
    whole = int(seconds)
    micro = int((seconds - whole) * 1_000_000)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", whole, micro))


class _HeaderDeadlineSocket:
    """A client socket whose header-phase receive timeout reads as the client going away.

    With ``SO_RCVTIMEO`` a blocking read that times out fails with EAGAIN, which gunicorn
    logs as a socket error with a traceback; read as end of stream it is gunicorn's "premature
    client disconnection" (a debug line) and the connection is closed. Only EAGAIN in blocking
    mode (the header phase) is translated: a body read under a Python timeout raises
    ``TimeoutError``, which the app answers with a 408.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def recv(self, size: int, *flags: int) -> bytes:
        try:
            return self._sock.recv(size, *flags)
        except BlockingIOError:
            if self._sock.gettimeout() is not None:  # non-blocking by choice: not ours to hide
                raise
            return b""

    def recv_into(self, buffer: Any, *args: int) -> int:
        try:
            return self._sock.recv_into(buffer, *args)
        except BlockingIOError:
            if self._sock.gettimeout() is not None:
                raise
            return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


class _RefusesOverCap:
    """Over gunicorn's ``worker_connections`` (our ``max_connections``): a 503, counted, logged."""

    log: Any
    nr_conns: int
    worker_connections: int

    def load_wsgi(self) -> None:
        super().load_wsgi()  # type: ignore[misc]
        # The app's own metrics (web/metrics.py), so /metrics sums every worker's refusals.
        entry = getattr(self, "asgi", None) or self.wsgi  # type: ignore[attr-defined]
        metrics = served_app(entry).extensions["deploy_web"]["metrics"]
        self._refusals: Counter = metrics.refused_connections
        self.over_cap = over_cap_response(self.worker_connections)

    def refused(self, addr: Any) -> None:
        """Count and log one connection refused over the cap (its answer is ``over_cap``)."""
        self._refusals.inc()
        self.log.warning(
            "refused a connection from %s with a 503: %d connections open, the cap per worker "
            "(DEPLOY_WEB_MAX_CONNECTIONS) is %d",
            addr[0] if isinstance(addr, tuple) and addr else addr,
            self.nr_conns,
            self.worker_connections,
        )


class _StopsAcceptingAtExit:
    """At SIGTERM, accept no more connections and tell the master (a reload waits for it)."""

    alive: bool

    def handle_exit(self, sig: int, frame: Any) -> None:
        # A signal handler may run mid-dispatch, so the poller is left alone: accept() refuses.
        super().handle_exit(sig, frame)  # type: ignore[misc]
        _say_stopped_accepting(self)

    def accept(self, listener: Any) -> None:
        if self.alive:  # once stopping, a waiting connection stays queued for the new workers
            super().accept(listener)  # type: ignore[misc]


class ThreadWorker(_StopsAcceptingAtExit, _RefusesOverCap, _JSONErrors, gthread.ThreadWorker):
    """gunicorn's ``gthread`` worker: JSON protocol errors, header and body timeouts, a 503 cap."""

    def init_process(self) -> None:
        settings = _settings()
        self._header_timeout, self._body_timeout = settings.header_timeout, settings.body_timeout
        self._lingering: dict[socket.socket, float] = {}  # refused, answered: their deadlines
        super().init_process()

    def set_accept_enabled(self, enabled: bool) -> None:
        # gunicorn stops accepting at the cap, leaving clients unanswered in the kernel's
        # queue; the listener stays registered while alive, and accept() refuses with a 503.
        super().set_accept_enabled(enabled or self.alive)

    def accept(self, listener: Any) -> None:
        if not self.alive or self.nr_conns < self.worker_connections:
            super().accept(listener)
            return
        try:
            sock, addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return
        self.refused(addr)
        # On the poller's thread, so nothing may block: a new socket's send buffer is empty,
        # so the short answer goes at once; what the client sends next is read and dropped.
        sock.setblocking(False)
        try:
            sock.send(self.over_cap)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the client is gone already
            sock.close()
            return
        self._lingering[sock] = time.monotonic() + REFUSED_LINGER
        self.poller.register(sock, selectors.EVENT_READ, self._drain_refused)

    def _drain_refused(self, sock: socket.socket) -> None:
        try:
            if sock.recv(65536):
                return
        except BlockingIOError:
            return
        except OSError:
            pass
        self._close_refused(sock)  # the client closed (or reset): done

    def _close_refused(self, sock: socket.socket) -> None:
        del self._lingering[sock]
        with contextlib.suppress(KeyError, ValueError):
            self.poller.unregister(sock)
        sock.close()

    def murder_pending(self) -> None:
        super().murder_pending()
        now = time.monotonic()
        for sock in [s for s, deadline in self._lingering.items() if deadline <= now]:
            self._close_refused(sock)

    def murder_keepalived(self, force: bool = False) -> None:
        super().murder_keepalived(force)
        if force:  # the worker is exiting
            for sock in list(self._lingering):
                self._close_refused(sock)

    def handle(self, conn: Any) -> Any:
        if not isinstance(conn.sock, _HeaderDeadlineSocket):  # once per connection
            _receive_timeout(conn.sock, self._header_timeout)
            conn.sock = _HeaderDeadlineSocket(conn.sock)
        return super().handle(conn)

    def handle_request(self, req: Any, conn: Any) -> Any:
        # The headers are in; the body (read by the app) gets a deadline per read.
        conn.sock.settimeout(self._body_timeout)
        return super().handle_request(req, conn)


class SyncWorker(_StopsAcceptingAtExit, _JSONErrors, sync.SyncWorker):
    """gunicorn's ``sync`` worker: JSON protocol errors, header and body timeouts.

    It has no connection cap: it serves one connection at a time, and the next ones wait in
    the listening socket's backlog (``backlog``) until it is done with the current one.
    """

    def init_process(self) -> None:
        settings = _settings()
        self._header_timeout, self._body_timeout = settings.header_timeout, settings.body_timeout
        super().init_process()

    def handle(self, listener: Any, client: Any, addr: Any) -> None:
        _receive_timeout(client, self._header_timeout)
        super().handle(listener, _HeaderDeadlineSocket(client), addr)

    def handle_request(self, listener: Any, req: Any, client: Any, addr: Any) -> Any:
        client.settimeout(self._body_timeout)
        return super().handle_request(listener, req, client, addr)


class _Protocol(asgi_protocol.ASGIProtocol):
    """gunicorn's asyncio HTTP protocol: JSON error answers, a header timeout, a 503 cap."""

    def connection_made(self, transport: Any) -> None:
        worker = self.worker
        self._refused = worker.nr_conns >= worker.worker_connections
        if self._refused:
            # Over the cap: answer 503, then read and drop until the client closes or the
            # linger ends. Not counted in nr_conns: it holds no slot, and no graceful stop waits.
            worker.refused(transport.get_extra_info("peername"))
            self.transport = transport
            transport.write(worker.over_cap)
            if transport.can_write_eof():
                transport.write_eof()
            self._linger = worker.loop.call_later(REFUSED_LINGER, transport.close)
            return
        super().connection_made(transport)
        # Until the first request's headers are in; the keep-alive timer covers later ones.
        self._header_timer = worker.loop.call_later(worker.header_timeout, self._headers_late)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False  # the client has read the 503 and closed: close our side too
        return super().eof_received()

    def _headers_late(self) -> None:
        if self._current_request is None and self.req_count <= 1 and self.transport:
            self.worker.log.info("closing a connection that sent no complete headers in time")
            self.transport.abort()

    def _on_headers_complete(self) -> Any:
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None
        return super()._on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._refused:
            self._linger.cancel()
            return
        timer = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
        super().connection_lost(exc)

    def _send_error_response(self, status: int, message: str, extra_headers: Any = ()) -> None:
        reason = asgi_protocol._REASON_PHRASES.get(status) or _phrase(status)
        extra = "".join(f"{name}: {value}\r\n" for name, value in extra_headers)
        self._safe_write(json_error_response(status, reason, message, extra))


class ASGIWorker(_RefusesOverCap, gasgi.ASGIWorker):
    """gunicorn's ``asgi`` worker: JSON protocol errors, a header timeout, a 503 over the cap."""

    def init_process(self) -> None:
        settings = _settings()
        self.header_timeout = settings.header_timeout
        # gunicorn's worker builds its protocol from this module name, with no hook to choose
        # another: in this worker process (one worker class per process) it is ours.
        gasgi.ASGIProtocol = _Protocol
        super().init_process()

    def handle_exit_signal(self) -> None:
        # Run on the event loop: no accept callback can come after close().
        super().handle_exit_signal()
        for server in self.servers:
            server.close()
        _say_stopped_accepting(self)
