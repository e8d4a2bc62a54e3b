"""The Open Inference Protocol (V2) REST endpoints, as KServe, MLServer and Triton clients call.

``POST /v2/models/{name}/infer`` takes the three ride fields as named columnar tensors
(``PULocationID`` and ``DOLocationID`` INT64, ``trip_distance`` FP64, shape ``[n]``) and answers
a ``duration`` FP64 tensor of shape ``[n]``. A V2 answer is one tensor with no place for a
per-row error, so one invalid row refuses the whole request with a ``{"error": ...}`` naming the
row and the field (the message is the one ``/predict`` gives for that ride: one schema).
Binary tensor data (Triton's extension) is refused with a clear error; JSON data only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from flask import Blueprint, Response, request
from pydantic import BaseModel, Field, ValidationError
from werkzeug.exceptions import HTTPException

from deploy_modes.core.errors import RideValidationError
from deploy_modes.core.scoring import ModelService
from deploy_modes.core.validation import invalid_reasons, validate_ride
from deploy_modes.web.metrics import WebMetrics
from deploy_modes.web.payload import ClientError, dump_json

__all__ = [
    "INFER_ENDPOINT",
    "INPUTS",
    "OUTPUT",
    "InferRequest",
    "InferResponse",
    "ModelMetadata",
    "V2Error",
    "create_v2_blueprint",
]

# The ride's fields as tensors: name -> (V2 datatype, whether it holds integers). One table:
# the metadata, the checks and the OpenAPI description all read it.
INPUTS: dict[str, tuple[str, bool]] = {
    "PULocationID": ("INT64", True),
    "DOLocationID": ("INT64", True),
    "trip_distance": ("FP64", False),
}
OUTPUT = "duration"
INFER_ENDPOINT = "/v2/models/<model>/infer"  # the metrics label: the route, not the name
_INT_TYPES = frozenset({"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"})
_FLOAT_TYPES = frozenset({"FP16", "FP32", "FP64"})
# Triton's binary tensor extension: the JSON header's length, then raw bytes.
_BINARY_HEADER = "Inference-Header-Content-Length"
_JSON = "application/json"


class Tensor(BaseModel):
    """A named tensor in JSON form: flat row-major data."""

    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class RequestedOutput(BaseModel):
    """An output the client asks for (only ``duration`` exists)."""

    name: str
    parameters: dict[str, Any] | None = None


class InferRequest(BaseModel):
    """The V2 inference request."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[Tensor] = Field(description="PULocationID, DOLocationID, trip_distance; [n].")
    outputs: list[RequestedOutput] | None = None


class InferResponse(BaseModel):
    """The V2 inference response: the ``duration`` tensor, minutes, FP64 [n]."""

    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[Tensor]


class TensorMetadata(BaseModel):
    """A tensor's name, datatype and shape (-1: any length)."""

    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """The V2 model metadata."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class V2Error(BaseModel):
    """The V2 error body."""

    error: str = Field(description="What was wrong, in one line.")


def create_v2_blueprint(
    service: ModelService,
    metrics: WebMetrics,
    read_json: Callable[[], bytes],
    ready: Callable[[], str | None],
) -> Blueprint:
    """Return the V2 endpoints serving ``service``; ``read_json`` returns the checked body."""
    v2 = Blueprint("v2", __name__, url_prefix="/v2")
    name, version = service.name, service.version
    metadata = dump_json(
        ModelMetadata(
            name=name,
            versions=[version],
            platform="scikit-learn",
            inputs=[
                TensorMetadata(name=field, datatype=datatype, shape=[-1])
                for field, (datatype, _) in INPUTS.items()
            ],
            outputs=[TensorMetadata(name=OUTPUT, datatype="FP64", shape=[-1])],
        ).model_dump()
    )

    def check_model(model: str, model_version: str | None) -> None:
        if model != name:
            raise ClientError(404, f"no model named {model!r}: this server serves {name!r}")
        if model_version is not None and model_version != version:
            raise ClientError(
                404, f"model {name!r} has no version {model_version!r}: it serves {version!r}"
            )

    @v2.get("/health/live")
    def live() -> Response:
        return _json({"live": True})

    @v2.get("/health/ready")
    def server_ready() -> Response:
        return _json({"ready": ready() is None}, 200 if ready() is None else 503)

    @v2.get("/models/<model>")
    @v2.get("/models/<model>/versions/<model_version>")
    def model_metadata(model: str, model_version: str | None = None) -> Response:
        check_model(model, model_version)
        return Response(metadata, mimetype=_JSON)

    @v2.get("/models/<model>/ready")
    @v2.get("/models/<model>/versions/<model_version>/ready")
    def model_ready(model: str, model_version: str | None = None) -> Response:
        check_model(model, model_version)
        is_ready = ready() is None
        return _json({"name": name, "ready": is_ready}, 200 if is_ready else 503)

    @v2.post("/models/<model>/infer")
    @v2.post("/models/<model>/versions/<model_version>/infer")
    def infer(model: str, model_version: str | None = None) -> Response:
        check_model(model, model_version)
        if _BINARY_HEADER in request.headers:
            raise ClientError(
                400, "binary tensor data is not supported: send the tensors' data as JSON"
            )
        body = _parse(read_json())
        for wanted in body.outputs or ():
            if wanted.name != OUTPUT:
                raise ClientError(
                    400, f"unknown output {wanted.name!r}: the only output is 'duration'"
                )
        try:
            pu, do, distance = _columns(body.inputs)
        except RideValidationError as exc:
            metrics.invalid_rides.labels(INFER_ENDPOINT, exc.field or "body").inc()
            raise ClientError(400, str(exc), exc.field) from None
        durations = service.predict_arrays(pu, do, distance)
        metrics.predictions.labels(INFER_ENDPOINT).inc(len(durations))
        answer: dict[str, Any] = {"model_name": name, "model_version": version}
        if body.id is not None:
            answer["id"] = body.id
        answer["outputs"] = [
            {
                "name": OUTPUT,
                "datatype": "FP64",
                "shape": [len(durations)],
                "data": durations.tolist(),
            }
        ]
        return _json(answer)

    @v2.errorhandler(ClientError)
    def _client_error(exc: ClientError) -> Response:
        return _json({"error": exc.message}, exc.status)

    @v2.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = exc.get_response()
        response.set_data(dump_json({"error": str(exc.description or exc.name)}))
        response.mimetype = _JSON
        return response

    return v2


def _json(body: dict[str, Any], status: int = 200) -> Response:
    return Response(dump_json(body), status=status, mimetype=_JSON)


def _parse(data: bytes) -> InferRequest:
    """Return the request's structure, or a ClientError naming the first thing wrong."""
    try:
        return InferRequest.model_validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "json_invalid":
            raise ClientError(400, f"the request body is not valid JSON: {first['msg']}") from None
        raise ClientError(400, f"{where}: {first['msg']}") from None


def _columns(inputs: list[Tensor]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the three ride columns; raise RideValidationError naming the tensor or row."""
    by_name: dict[str, Tensor] = {}
    for tensor in inputs:
        if tensor.name not in INPUTS:
            expected = ", ".join(INPUTS)
            raise RideValidationError(f"unknown input {tensor.name!r}: expected {expected}", None)
        if tensor.name in by_name:
            raise RideValidationError(f"input {tensor.name!r} is given twice", tensor.name)
        by_name[tensor.name] = tensor
    missing = [field for field in INPUTS if field not in by_name]
    if missing:
        raise RideValidationError(f"missing input tensor {missing[0]!r}", missing[0])
    rows = {len(tensor.data) for tensor in by_name.values()}
    if len(rows) != 1:
        sizes = ", ".join(f"{n}: {len(t.data)}" for n, t in by_name.items())
        raise RideValidationError(f"the input tensors differ in length ({sizes})", None)
    for field, tensor in by_name.items():
        _check_tensor(field, tensor)
    columns = [by_name[field].data for field in INPUTS]
    try:
        pu, do, distance = (np.array(column, dtype="float64") for column in columns)
    except OverflowError:  # an integer beyond float range: the row check below names it
        _raise_first_invalid(columns, range(len(columns[0])))
    bad = np.zeros(pu.shape, dtype=bool)
    for mask in invalid_reasons(pu, do, distance).values():
        bad |= mask
    if bad.any():
        _raise_first_invalid(columns, np.flatnonzero(bad).tolist())
    return pu.astype("int64"), do.astype("int64"), distance


def _check_tensor(field: str, tensor: Tensor) -> None:
    """Refuse a tensor whose datatype, shape or element types do not fit ``field``."""
    integral = INPUTS[field][1]
    allowed = _INT_TYPES if integral else _INT_TYPES | _FLOAT_TYPES
    if tensor.datatype not in allowed:
        want = "an integer datatype (INT64)" if integral else "a numeric datatype (FP64)"
        raise RideValidationError(
            f"input {field!r} has datatype {tensor.datatype!r}: expected {want}", field
        )
    n = len(tensor.data)
    if tensor.shape not in ([n], [n, 1]):
        raise RideValidationError(
            f"input {field!r} has shape {tensor.shape} for {n} values: expected [{n}]", field
        )
    # JSON numbers only, exactly: a bool is not a zone, 74.5 is not an INT64.
    if integral:
        odd = next((i for i, v in enumerate(tensor.data) if type(v) is not int), None)
    else:
        odd = next((i for i, v in enumerate(tensor.data) if type(v) not in (int, float)), None)
    if odd is not None:
        value = tensor.data[odd]
        raise RideValidationError(
            f"row {odd}: {field} must be a {tensor.datatype} number, got {value!r}", field
        )


def _raise_first_invalid(columns: list[list[Any]], rows: Any) -> None:
    """Raise the ``/predict`` error of the first row the core refuses, naming the row."""
    for row in rows:
        ride = dict(zip(INPUTS, (column[row] for column in columns), strict=True))
        try:
            validate_ride(ride)
        except RideValidationError as exc:
            raise RideValidationError(f"row {row}: {exc}", exc.field) from None
    # The vectorised check and the ride model disagree: a bug, never a silent answer.
    raise RuntimeError(f"rows {list(rows)[:5]} failed the array checks but pass validate_ride")
