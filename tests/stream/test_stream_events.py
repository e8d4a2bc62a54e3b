"""Unit tests for the pure event codecs: good rides, every kind of poison, output shapes."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from stream_helpers import ride_bytes

from deploy_modes.core import MODEL_NAME
from deploy_modes.core.schema import PredictionEvent, Ride
from deploy_modes.stream.events import (
    Poison,
    RideEvent,
    dead_letter,
    decode_ride_event,
    encode,
    prediction_event,
)


def test_course_record_decodes_to_a_validated_ride() -> None:
    decoded = decode_ride_event(ride_bytes(130, 205, 3.66, 256))
    assert decoded == RideEvent(
        ride=Ride(PULocationID=130, DOLocationID=205, trip_distance=3.66), ride_id=256
    )


def test_string_ride_id_and_zone_strings_are_accepted() -> None:
    decoded = decode_ride_event(ride_bytes("130", "205", 1, "abc-1"))
    assert decoded == RideEvent(
        ride=Ride(PULocationID=130, DOLocationID=205, trip_distance=1.0), ride_id="abc-1"
    )


@pytest.mark.parametrize(
    ("data", "error", "field"),
    [
        (b"{not json", "not valid JSON", None),
        (b"\xff\xfe\x00garbage", "not UTF-8", None),
        (b"", "not valid JSON", None),
        (b"[1, 2, 3]", "must be a JSON object, got list", None),
        (b'"a string"', "must be a JSON object, got str", None),
        (b"null", "must be a JSON object", None),
        (b'{"ride_id": 1}', "ride is required", "ride"),
        (
            b'{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1}}',
            "ride_id",
            "ride_id",
        ),
        (ride_bytes(1, 2, 1.0, True), "ride_id must be an integer or a string", "ride_id"),
        (ride_bytes(1, 2, 1.0, [1]), "ride_id must be an integer or a string", "ride_id"),
        (ride_bytes(1, 2, 1.0, ""), "ride_id must be 1 to 256", "ride_id"),
        (ride_bytes(1, 2, 1.0, "x" * 257), "ride_id must be 1 to 256", "ride_id"),
        (b'{"ride": [1, 2], "ride_id": 1}', "a ride must be a JSON object", None),
        (ride_bytes(None, 2, 1.0, 1), "PULocationID is required", "PULocationID"),
        (ride_bytes(1, "two", 1.0, 1), "DOLocationID must be an integer", "DOLocationID"),
        (ride_bytes(0, 2, 1.0, 1), "between 1 and 265", "PULocationID"),
        (ride_bytes(1, 266, 1.0, 1), "between 1 and 265", "DOLocationID"),
        (ride_bytes(1, 2, "3.5", 1), "trip_distance must be a number", "trip_distance"),
        (ride_bytes(1, 2, -1.0, 1), "must not be negative", "trip_distance"),
        (ride_bytes(1, 2, 501.0, 1), "at most 500", "trip_distance"),
        (ride_bytes(1, 2, float("nan"), 1), "finite", "trip_distance"),
        (
            b'{"ride": {"PULocationID": 1, "DOLocationID": 2, "trip_distance": 1e999}, '
            b'"ride_id": 1}',
            "finite",
            "trip_distance",
        ),
        (b"[" * 100_000 + b"]" * 100_000, "", None),
        (b'{"ride_id": 1' + b"9" * 5000 + b"}", "not valid JSON", None),
    ],
)
def test_poison_records_say_why(data: bytes, error: str, field: str | None) -> None:
    decoded = decode_ride_event(data, max_bytes=1024 * 1024)
    assert isinstance(decoded, Poison)
    assert error in decoded.error
    assert decoded.field == field


def test_oversized_record_is_poison_before_parsing() -> None:
    data = ride_bytes(1, 2, 1.0, "x" * 200)
    decoded = decode_ride_event(data, max_bytes=100)
    assert isinstance(decoded, Poison)
    assert "more than the 100 allowed" in decoded.error


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_bytes_decode_without_raising(data: bytes) -> None:
    assert isinstance(decode_ride_event(data), RideEvent | Poison)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=20,
    )
)
def test_any_json_ride_decodes_without_raising(ride: object) -> None:
    data = json.dumps({"ride": ride, "ride_id": 1}).encode()
    assert isinstance(decode_ride_event(data), RideEvent | Poison)


def test_prediction_event_is_the_course_contract() -> None:
    event = prediction_event(MODEL_NAME, "v1", 12.5, 256)
    assert event == {
        "model": "ride_duration_prediction_model",
        "version": "v1",
        "prediction": {"ride_duration": 12.5, "ride_id": 256},
    }
    assert PredictionEvent.model_validate(event, strict=True).model_dump() == event
    assert json.loads(encode(event)) == event


def test_dead_letter_keeps_the_error_and_the_original_text() -> None:
    letter = dead_letter(b'{"ride": 1}', Poison("a ride must be a JSON object", None), "s-1", "42")
    assert letter["payload"] == '{"ride": 1}'
    assert letter["error"] == "a ride must be a JSON object"
    assert letter["source"] == {"shard_id": "s-1", "sequence_number": "42"}
    assert letter["truncated"] is False


def test_dead_letter_of_binary_payload_is_base64() -> None:
    letter = dead_letter(b"\xff\x00\x01", Poison("record is not UTF-8 text"))
    assert base64.b64decode(letter["payload_base64"]) == b"\xff\x00\x01"
    assert "payload" not in letter


def test_dead_letter_of_huge_payload_is_truncated_to_fit_one_record() -> None:
    letter = dead_letter(b"x" * 2_000_000, Poison("too big"))
    assert letter["truncated"] is True
    assert len(encode(letter)) < 1024 * 1024
