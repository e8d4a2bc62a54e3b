"""``deploy stream send --input URL``: rides from a TLC month on a real loopback HTTP server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from deploy_modes.cli.main import app
from deploy_modes.core.data import month_file
from deploy_modes.launch.processes import free_port
from deploy_modes.stream.kinesis import read_all
from deploy_modes.stream.rides import ride_source
from deploy_modes.stream.settings import StreamSettings

MARCH = month_file(2021, 3)


def _send(source: str, endpoint: str, stream: str = "ride_events") -> Any:
    return CliRunner().invoke(
        app,
        ["stream", "send", "--input", source, "--count", "30", "--endpoint-url", endpoint],
        env={"DEPLOY_STREAM_INPUT_STREAM": stream},
    )


@pytest.mark.integration
def test_send_puts_the_rides_of_a_url_month_as_of_the_same_file(
    tlc_site: tuple[str, Path], make_streams: Callable[..., StreamSettings], kinesis: Any
) -> None:
    base, root = tlc_site
    settings = make_streams(1)  # one shard: the records come back in the order sent
    result = _send(f"{base}/{MARCH}", str(settings.endpoint_url), settings.input_stream)
    assert result.exit_code == 0, result.output
    assert "sent 30 rides" in result.output
    sent = [json.loads(record.data) for record, _ in read_all(kinesis, settings.input_stream)]
    assert sent == list(ride_source(30, input_path=root / MARCH)[1])


@pytest.mark.parametrize(("where", "expected"), [("missing", "HTTP 404"), ("cut", "cut off")])
def test_a_bad_url_is_one_error_line_before_kinesis_is_called(
    tlc_site: tuple[str, Path], tlc_cut: str, where: str, expected: str
) -> None:
    url = f"{tlc_site[0]}/{month_file(1999, 3)}" if where == "missing" else f"{tlc_cut}/{MARCH}"
    # Nothing listens at the endpoint: reaching it would be another error than the URL's.
    result = _send(url, f"http://127.0.0.1:{free_port()}")
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert f"cannot download {url}" in line and expected in line
    assert "Traceback" not in result.output
