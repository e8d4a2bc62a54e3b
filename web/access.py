"""Request ids and the one JSON access line per request, shared by every answering path."""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["ACCESS_LOGGER", "REQUEST_ID_HEADER", "access_line", "access_logger", "request_id"]

ACCESS_LOGGER = "deploy_modes.web.access"
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_ENVIRON = "HTTP_X_REQUEST_ID"
# A client's request id is echoed into headers and logs, so only a short, plain token is honoured.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(environ: Mapping[str, Any]) -> str:
    """Return the client's ``X-Request-ID`` when it is a plain token, else a fresh one."""
    given = environ.get(_REQUEST_ID_ENVIRON, "")
    # 128 random bits as 32 hex digits, as uuid4().hex but without building a UUID object.
    return given if _REQUEST_ID.fullmatch(given) else os.urandom(16).hex()


def access_line(
    method: str, path: str, status: int, seconds: float, rid: str, remote_addr: str | None
) -> str:
    """Return the JSON access line of one answered request."""
    return json.dumps(
        {
            "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "request_id": rid,
            "remote_addr": remote_addr,
            "pid": os.getpid(),  # which gunicorn worker answered
        },
        ensure_ascii=True,  # a log line stays one line of ASCII whatever the path holds
    )


def access_logger() -> logging.Logger:
    """Return the logger the access lines go to (``deploy_modes.web.access``)."""
    return logging.getLogger(ACCESS_LOGGER)
