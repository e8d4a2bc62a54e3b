"""The AWS Lambda entry point: ``lambda_handler(event, context)`` only delegates.

Set-up happens once per cold start, on the first call (Lambda reuses the module after), from
the course's environment variables (see :func:`deploy_modes.stream.lambda_batch.from_environment`):
``MODEL_LOCATION``, ``PREDICTIONS_STREAM_NAME``, ``DEAD_LETTER_STREAM_NAME``,
``KINESIS_ENDPOINT_URL`` and ``TEST_RUN=True`` (predict without putting).
"""

from __future__ import annotations

import os
from typing import Any

from deploy_modes.core.notices import show_warnings_as_lines
from deploy_modes.stream.lambda_batch import LambdaBatch, from_environment

__all__ = ["lambda_handler", "reset"]

_batch: LambdaBatch | None = None


def _set_up() -> LambdaBatch:
    global _batch
    if _batch is None:
        show_warnings_as_lines()  # CloudWatch gets one `warning:` line, not Python's format
        _batch = from_environment(os.environ)
    return _batch


def reset() -> None:
    """Forget the cold-start set-up (tests change the environment between calls)."""
    global _batch
    _batch = None


def lambda_handler(event: Any, context: Any) -> dict[str, Any]:
    """Predict every ride of a Kinesis event; poison goes to the dead-letter stream."""
    return _set_up().handle(event)
