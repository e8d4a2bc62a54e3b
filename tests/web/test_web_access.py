"""The access line: assembled by hand for speed, held equal to ``json.dumps`` of the same dict."""

from __future__ import annotations

import json
import os
import re

from hypothesis import given
from hypothesis import strategies as st

from deploy_modes.web.access import access_line

_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00")


def _truth(
    method: str, path: str, status: int, seconds: float, rid: str, remote: str | None, ts: str
) -> str:
    """Return what the line was before it was assembled by hand: json.dumps of the dict."""
    return json.dumps(
        {
            "ts": ts,
            "method": method,
            "path": path,
            "status": status,
            "latency_ms": round(seconds * 1000, 3),
            "request_id": rid,
            "remote_addr": remote,
            "pid": os.getpid(),
        },
        ensure_ascii=True,
    )


@given(
    method=st.text(max_size=12),
    path=st.text(max_size=40),
    status=st.integers(min_value=100, max_value=599),
    seconds=st.floats(min_value=0, max_value=1e6, allow_nan=False, allow_infinity=False),
    rid=st.text(max_size=40),
    remote=st.none() | st.text(max_size=45),
)
def test_access_line_equals_json_dumps_of_the_same_dict(
    method: str, path: str, status: int, seconds: float, rid: str, remote: str | None
) -> None:
    line = access_line(method, path, status, seconds, rid, remote)
    parsed = json.loads(line)
    assert _TS.fullmatch(parsed["ts"])
    assert line == _truth(method, path, status, seconds, rid, remote, parsed["ts"])
    assert line.isascii() and "\n" not in line


def test_access_line_escapes_what_json_escapes() -> None:
    line = access_line('PO"ST', "/pré\n\u2028dict", 404, 0.0015, "a\\b", "::1")
    parsed = json.loads(line)
    assert (parsed["method"], parsed["path"], parsed["request_id"]) == (
        'PO"ST',
        "/pré\n\u2028dict",
        "a\\b",
    )
    assert parsed["latency_ms"] == 1.5 and parsed["remote_addr"] == "::1"
    assert line.isascii() and "\n" not in line
