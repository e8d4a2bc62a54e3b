"""The one schema: the ride, the web answers and errors, the batch request and the stream events.

Every other place derives from these pydantic models: web and stream validation
(``Ride.model_validate``), ``/openapi.json`` (``model_json_schema()``), the stream codec, the
Lambda and the vectorised batch checks (:func:`field_bounds`). The accepted inputs and error
messages are the course-compatible ones: zone IDs as JSON integers, integral numbers or digit
strings; distances as JSON numbers; extra fields ignored.
"""

from __future__ import annotations

import numbers
from typing import Annotated, Any

import annotated_types
import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, JsonValue, ValidationError
from pydantic_core import PydanticCustomError

from deploy_modes.core.errors import RideValidationError

__all__ = [
    "MAX_BATCH_RIDES",
    "MAX_DISTANCE",
    "MAX_RIDE_ID_CHARS",
    "MAX_ZONE",
    "MIN_DISTANCE",
    "MIN_ZONE",
    "BatchAnswer",
    "BatchItem",
    "BatchRequest",
    "Error",
    "Prediction",
    "PredictionEvent",
    "Ready",
    "Ride",
    "RideEvent",
    "RidePrediction",
    "RideRequest",
    "Status",
    "TipPrediction",
    "TipPredictionEvent",
    "event_error",
    "field_bounds",
    "json_type",
    "ride_error",
]

# The bounds, each defined once: the models below are built from them and
# :func:`field_bounds` reads them back from the models for the vectorised checks.
MIN_ZONE = 1
MAX_ZONE = 265
MIN_DISTANCE = 0.0
MAX_DISTANCE = 500.0
MAX_BATCH_RIDES = 10_000
MAX_RIDE_ID_CHARS = 256  # Kinesis' partition key limit; the ride_id becomes the output key
_MAX_ID_DIGITS = 6  # longer digit strings are out of range anyway; refuse before int()
_RIDE_ERROR = "ride"  # the pydantic error type of the rules below; the message is ours


def _refuse(message: str) -> PydanticCustomError:
    return PydanticCustomError(_RIDE_ERROR, message)


def _zone(value: Any) -> Any:
    """Turn the course's zone forms into an int; the range check is the field's ge/le."""
    if type(value) is int:  # the common JSON case, checked first because it is fastest
        return value
    if value is None:
        raise _refuse("is required")
    if isinstance(value, bool | np.bool_):
        raise _refuse("must be an integer zone ID, got a boolean")
    if isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and float(value).is_integer()
    ):  # numpy integers, and integral floats: 74.0 is zone 74
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and value.isascii():
        digits = value.strip()
        if len(digits) > _MAX_ID_DIGITS:
            raise _refuse(f"must be between {MIN_ZONE} and {MAX_ZONE}")
        return int(digits)
    raise _refuse(f"must be an integer zone ID, got {type(value).__name__}")


def _distance(value: Any) -> Any:
    """Refuse what is not a JSON number; finiteness and range are the field's constraints."""
    if type(value) is float:  # the common JSON case
        return value
    if value is None:
        raise _refuse("is required")
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Real):
        raise _refuse(f"must be a number of miles, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an int too large for a float
        raise _refuse(f"must be at most {MAX_DISTANCE:g}") from None


def _ride_id(value: Any) -> Any:
    """Accept the course's ride ids: a non-boolean int or a string, 1 to 256 characters."""
    if value is None:
        raise _refuse("is required")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise _refuse(f"must be an integer or a string, got {type(value).__name__}")
    if not str(value) or len(str(value)) > MAX_RIDE_ID_CHARS:
        raise _refuse(f"must be 1 to {MAX_RIDE_ID_CHARS} characters")
    return value


Zone = Annotated[int, Field(ge=MIN_ZONE, le=MAX_ZONE), BeforeValidator(_zone)]
Distance = Annotated[
    float, Field(ge=MIN_DISTANCE, le=MAX_DISTANCE, allow_inf_nan=False), BeforeValidator(_distance)
]
RideId = Annotated[int | str, BeforeValidator(_ride_id)]

# What the field's own constraints say when they fail, per field (the rules above say the rest).
_CONSTRAINT_MESSAGES = {
    "PULocationID": {
        "greater_than_equal": f"must be between {MIN_ZONE} and {MAX_ZONE}",
        "less_than_equal": f"must be between {MIN_ZONE} and {MAX_ZONE}",
    },
    "trip_distance": {
        "finite_number": "must be a finite number",
        "greater_than_equal": "must not be negative",
        "less_than_equal": f"must be at most {MAX_DISTANCE:g}",
    },
}
_CONSTRAINT_MESSAGES["DOLocationID"] = _CONSTRAINT_MESSAGES["PULocationID"]


class Ride(BaseModel):
    """A ride as the course's clients send it: pickup zone, dropoff zone, distance in miles."""

    # By alias only: a body with ``pu`` instead of ``PULocationID`` is missing a field.
    model_config = ConfigDict(frozen=True)

    pu: Zone = Field(alias="PULocationID", description="Pickup TLC taxi zone ID.", examples=[10])
    do: Zone = Field(alias="DOLocationID", description="Dropoff TLC taxi zone ID.", examples=[50])
    distance: Distance = Field(
        alias="trip_distance", description="Trip distance in miles (finite).", examples=[40]
    )


class RideRequest(Ride):
    """The ``/predict`` body: a ride and an optional ``ride_id`` echoed in the answer."""

    ride_id: JsonValue = Field(None, description="Any JSON value; echoed back in the answer.")


class Error(BaseModel):
    """Every error answer: what was wrong in one line, and the offending field."""

    error: str = Field(description="What was wrong, in one line.")
    field: str | None = Field(description="The offending field.")


class Prediction(BaseModel):
    """The ``/predict`` answer (the course's ``duration``)."""

    duration: float = Field(description="Predicted duration in minutes.")
    model_version: str
    ride_id: JsonValue = Field(None, description="Echoed from the request when given.")


class BatchRequest(BaseModel):
    """The ``/predict/batch`` body."""

    rides: list[RideRequest] = Field(max_length=MAX_BATCH_RIDES)


class BatchItem(BaseModel):
    """One ride's outcome in a batch answer: a duration, or why it was refused."""

    index: int = Field(description="Position of the ride in the request.")
    duration: float | None
    ride_id: JsonValue = Field(None, description="Echoed from the request when given.")
    error: str | None = Field(None, description="Why this ride was refused.")
    field: str | None = None


class BatchAnswer(BaseModel):
    """The ``/predict/batch`` answer; an invalid ride is reported by index."""

    predictions: list[BatchItem]
    model_version: str
    invalid: int = Field(description="How many rides were refused.")


class Status(BaseModel):
    """The ``/health`` answer."""

    status: str


class Ready(Status):
    """The ``/ready`` answer."""

    model_name: str
    model_version: str


class RideEvent(BaseModel):
    """The course's stream input event: ``{"ride": {...}, "ride_id": 256}``."""

    model_config = ConfigDict(frozen=True)

    ride_id: RideId = Field(description="Becomes the output event's partition key.")
    ride: Ride


class RidePrediction(BaseModel):
    """The ``prediction`` part of an output event."""

    ride_duration: float
    ride_id: int | str


class PredictionEvent(BaseModel):
    """The course's stream output event."""

    model: str = Field(description="The model's name, the course's ride_duration_prediction_model.")
    version: str
    prediction: RidePrediction


class TipPrediction(BaseModel):
    """The ``prediction`` part of a tip model's output event."""

    tip_amount: float = Field(description="Predicted recorded tip in dollars.")
    ride_id: int | str


class TipPredictionEvent(BaseModel):
    """The tip model's stream output event: the course's shape, the value named by its target."""

    model: str = Field(description="The model's name: tip_amount_prediction_model.")
    version: str
    prediction: TipPrediction


def field_bounds(model: type[BaseModel], name: str) -> tuple[float, float]:
    """Return a field's ``(ge, le)`` bounds as its model declares them."""
    low = high = None
    for rule in model.model_fields[name].metadata:
        if isinstance(rule, annotated_types.Ge):
            low = rule.ge
        elif isinstance(rule, annotated_types.Le):
            high = rule.le
    if low is None or high is None:
        raise ValueError(f"{model.__name__}.{name} declares no ge/le bounds")
    return float(low), float(high)


def json_type(value: object) -> str:
    """Name a value's JSON type the way error messages do ("an array", "null", ...)."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return "a number" if isinstance(value, numbers.Real) else type(value).__name__


def _message(error: Any, field: str) -> str:
    kind = error["type"]
    if kind == "missing":
        return f"{field} is required"
    if kind == _RIDE_ERROR:
        return f"{field} {error['msg']}"
    known = _CONSTRAINT_MESSAGES.get(field, {}).get(kind)
    # Any other pydantic error is a rule this module forgot: say it rather than hide it.
    return f"{field} {known or error['msg']}"


def _error(error: Any, loc: tuple[Any, ...]) -> RideValidationError:
    if not loc:  # the ride itself is not an object
        return RideValidationError(
            f"a ride must be a JSON object, got {json_type(error['input'])}", None
        )
    field = str(loc[0])
    return RideValidationError(_message(error, field), field)


def ride_error(exc: ValidationError) -> RideValidationError:
    """Return the first failure of a ride as the one-line error every protocol shows."""
    error = exc.errors(include_url=False)[0]
    return _error(error, error["loc"])


def event_error(exc: ValidationError) -> RideValidationError:
    """Return the first failure of a stream event: a missing ride, the ride_id, then the ride."""
    errors = exc.errors(include_url=False)
    missing = [e for e in errors if e["loc"] == ("ride",) and e["type"] == "missing"]
    error = (missing or errors)[0]  # fields fail in declaration order: ride_id, then ride
    if error["loc"][0] == "ride" and error["type"] != "missing":
        return _error(error, error["loc"][1:])
    return _error(error, error["loc"])
