"""Serve the Flask (WSGI) app from gunicorn's asyncio worker, calling it inline on the loop.

gunicorn's ``gthread`` worker hands every request from its poller thread to a pool thread and
back, about 200 us of CPU a request on top of the app: more than Flask and the model together.
Its ``asgi`` worker parses HTTP on one event loop per process (uvloop, when installed)
and keeps connections alive at a small fraction of that. The app is CPU-bound, and the GIL
would serialise threads anyway, so this bridge calls it directly on the loop: a worker answers
one request at a time, like a ``sync`` worker, and keeps every client connection open meanwhile.

The body is buffered (at most ``max_body_bytes + 1``, so the app still says 413) before the app
runs, so a slow client never holds a worker while the app waits for its bytes.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes, urlsplit

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["BODY_TIMEOUT_ENVIRON", "WSGIBridge", "served_app"]

# Set (to the timeout, in seconds) when the request's body stalled: the app then answers 408.
BODY_TIMEOUT_ENVIRON = "deploy_web.body_timeout"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SPECIAL_HEADERS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


class WSGIBridge:
    """An ASGI application running a WSGI application inline, one request at a time."""

    def __init__(
        self, app: WSGIApplication, max_body_bytes: int, body_timeout: float = 10.0
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.body_timeout = body_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":  # websockets: nothing here speaks them; refuse the upgrade
            await send({"type": "websocket.close", "code": 1003})
            return
        try:
            # asyncio.timeout rather than wait_for: no extra task per request (~5% of a
            # /predict request's CPU in profile_web.py), the same TimeoutError at the deadline.
            async with asyncio.timeout(self.body_timeout):
                body = await self._read_body(receive)
        except TimeoutError:
            # The app answers (a JSON 408, logged and counted) from an empty body; the
            # connection closes after it, since its unread body can never be framed.
            environ = _environ(scope, b"")
            environ[BODY_TIMEOUT_ENVIRON] = self.body_timeout
            status, headers, chunks = self._call(environ)
            headers.append((b"connection", b"close"))
        else:
            if body is None:
                return  # the client went away mid-body: nobody to answer
            status, headers, chunks = self._call(_environ(scope, body))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": b"".join(chunks)})

    async def _read_body(self, receive: Receive) -> bytes | None:
        """Return the body, cut one byte past the limit (the app then answers 413)."""
        parts: list[bytes] = []
        size = 0
        while size <= self.max_body_bytes:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(parts)[: self.max_body_bytes + 1]

    def _call(self, environ: dict[str, Any]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
        started: list[Any] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            started[:] = [status, headers]
            return _no_write

        result: Iterable[bytes] = self.app(environ, start_response)
        try:
            chunks = list(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        status, headers = started
        encoded = [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in headers
        ]
        return int(status[:3]), encoded, chunks


def served_app(entry: Any) -> Any:
    """Return the WSGI app behind gunicorn's callable: the bridge's, or the callable itself."""
    return entry.app if isinstance(entry, WSGIBridge) else entry


def _no_write(data: bytes) -> object:
    raise NotImplementedError("the WSGI write() callable is not supported: return the body")


def _environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """Return the WSGI environ of one ASGI HTTP request (PEP 3333 from the ASGI spec)."""
    server = scope.get("server") or ("localhost", 80)
    client = scope.get("client")
    # WSGI's PATH_INFO is the decoded path as latin-1 text; ASGI's path includes root_path.
    raw_path = scope.get("raw_path")
    if raw_path and not raw_path.startswith(b"/") and b"://" in raw_path:
        # An absolute-form target (``POST http://host/predict``, RFC 9112 section 3.2.2): the
        # path is the URL's; gunicorn's WSGI workers split it so, and the answer must not differ.
        raw_path = urlsplit(raw_path).path or b"/"
    if raw_path:  # the exact bytes: /%FF is b"\xff", as gunicorn's WSGI workers give it
        path = unquote_to_bytes(raw_path).decode("latin-1")
    else:
        path = scope["path"].encode("utf-8", "surrogateescape").decode("latin-1")
    root = scope.get("root_path", "").encode("utf-8", "surrogateescape").decode("latin-1")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        path = path[len(root) :]  # only at a segment boundary: /apiary is not below /api
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root,
        "PATH_INFO": path,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]) if server[1] is not None else "80",
        "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    if client:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    for name, value in scope.get("headers", ()):
        if b"_" in name:
            # X_Request_ID would land on the same key as X-Request-ID: drop it, as gunicorn's
            # WSGI workers do (header_map = "drop"), so no proxy-set header can be spoofed.
            continue
        key = _SPECIAL_HEADERS.get(name) or _cgi_name(name)
        text = value.decode("latin-1")
        # Repeated headers are one comma-joined value in WSGI (RFC 9110 section 5.3).
        environ[key] = f"{environ[key]},{text}" if key in environ else text
    return environ


def _cgi_name(header: bytes) -> str:
    return "HTTP_" + header.decode("latin-1").upper().replace("-", "_")


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge start-up and shut-down: the app is ready once the module is loaded."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
