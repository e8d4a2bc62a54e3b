"""The AWS Lambda entry point: ``lambda_handler(event, context)`` only delegates.

Set-up happens once per cold start, on the first call (Lambda reuses the module after):
``MODEL_LOCATION`` (local path or ``s3://``), ``PREDICTIONS_STREAM_NAME``,
``KINESIS_ENDPOINT_URL`` and ``TEST_RUN=True`` (predict without putting), as in the course.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from deploy_modes.core.artifact import load_model
from deploy_modes.core.notices import show_warnings_as_lines
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.storage import aws_client
from deploy_modes.stream.kinesis import put_records
from deploy_modes.stream.service import OutputRecord, StreamService

__all__ = ["lambda_handler", "reset"]

_DEFAULT_MODEL_LOCATION = "models/ride-duration"
_DEFAULT_PREDICTIONS_STREAM = "ride_predictions"

_service: StreamService | None = None
_put: Callable[[list[OutputRecord]], None] | None = None


def _set_up() -> tuple[StreamService, Callable[[list[OutputRecord]], None] | None]:
    global _service, _put
    if _service is None:
        location = os.environ.get("MODEL_LOCATION", _DEFAULT_MODEL_LOCATION)
        show_warnings_as_lines()  # CloudWatch gets one `warning:` line, not Python's format
        service = StreamService(ModelService(load_model(location)))
        put = None
        if os.environ.get("TEST_RUN", "False") != "True":
            stream = os.environ.get("PREDICTIONS_STREAM_NAME", _DEFAULT_PREDICTIONS_STREAM)
            client = aws_client("kinesis", os.environ.get("KINESIS_ENDPOINT_URL"))

            def put(records: list[OutputRecord]) -> None:
                put_records(client, stream, records)

        _service, _put = service, put
    return _service, _put


def reset() -> None:
    """Forget the cold-start set-up (tests change the environment between calls)."""
    global _service, _put
    _service, _put = None, None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Predict every ride of a Kinesis event; poison records come back as item failures."""
    service, put = _set_up()
    return service.handle_lambda_event(event, put)
