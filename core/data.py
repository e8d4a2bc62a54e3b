"""NYC TLC green trip data: a realistic generator and a reader that checks the schema.

The generator writes the real TLC parquet schema (names and dtypes), so a real
``green_tripdata_YYYY-MM.parquet`` dropped in its place works unchanged. The city itself
(zone popularity, zone-pair slowness) comes from a fixed seed so that every month shares it and
a model trained on one month generalises to the next; the rides come from ``seed`` and the month.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.storage import (
    download,
    is_http,
    is_s3,
    local_file,
    read_bytes,
    write_bytes,
)

# Re-exported: the column list and the month helpers are defined once, pandas-free, in
# core.tlc; callers that read trips find them here too.
from deploy_modes.core.tlc import (
    REQUIRED_COLUMNS,
    TIME_COLUMNS,
    month_file,
    parse_month,
    yellow_renames,
)

__all__ = [
    "CARD",
    "CASH",
    "PAYMENT_SHARES",
    "REQUIRED_COLUMNS",
    "TLC_SCHEMA",
    "generate_month",
    "month_file",
    "parse_month",
    "read_trips",
    "write_month",
]

_CITY_SEED = 20_210_101
N_ZONES = 265
# Zones that carry much of the real green-taxi traffic (East Harlem, Astoria, Jamaica, ...).
_POPULAR_ZONES = [74, 75, 41, 42, 166, 7, 82, 95, 97, 129, 244, 43, 65, 181, 24, 116, 152, 260]

# TLC payment codes and about the shares of green-taxi rides paying each way.
CARD, CASH, NO_CHARGE, DISPUTE, UNKNOWN_PAYMENT = 1.0, 2.0, 3.0, 4.0, 5.0
PAYMENT_SHARES = {CARD: 0.55, CASH: 0.43, NO_CHARGE: 0.012, DISPUTE: 0.006, UNKNOWN_PAYMENT: 0.002}
_CARD_NO_TIP = 0.12  # card riders who press "no tip"
_CASH_RECORDED = 0.02  # cash rides whose tip the driver keyed in
_PAYMENT_STREAM = 1  # the payment generator's own seed word, apart from the rides' generator

TLC_SCHEMA = pa.schema(
    [
        ("VendorID", pa.int64()),
        ("lpep_pickup_datetime", pa.timestamp("us")),
        ("lpep_dropoff_datetime", pa.timestamp("us")),
        ("store_and_fwd_flag", pa.string()),
        ("RatecodeID", pa.float64()),
        ("PULocationID", pa.int64()),
        ("DOLocationID", pa.int64()),
        ("passenger_count", pa.float64()),
        ("trip_distance", pa.float64()),
        ("fare_amount", pa.float64()),
        ("extra", pa.float64()),
        ("mta_tax", pa.float64()),
        ("tip_amount", pa.float64()),
        ("tolls_amount", pa.float64()),
        ("ehail_fee", pa.float64()),
        ("improvement_surcharge", pa.float64()),
        ("total_amount", pa.float64()),
        ("payment_type", pa.float64()),
        ("trip_type", pa.float64()),
        ("congestion_surcharge", pa.float64()),
    ]
)
_REQUIRED_KINDS = {c: "timestamp" if c in TIME_COLUMNS else "number" for c in REQUIRED_COLUMNS}


def _city() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return zone pickup weights, zone slowness and zone-pair extra minutes (fixed city)."""
    rng = np.random.default_rng(_CITY_SEED)
    weights = rng.pareto(1.2, N_ZONES + 1) + 0.05
    weights[0] = 0.0
    weights[_POPULAR_ZONES] += 25.0
    weights /= weights.sum()
    slowness = rng.lognormal(0.0, 0.25, N_ZONES + 1)  # >1: congested zone
    pair_minutes = rng.normal(0.0, 2.5, (N_ZONES + 1, N_ZONES + 1))
    return weights, slowness, pair_minutes


def _payments(fare: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Return TLC payment codes and recorded tips: card rides tip a share, cash mostly 0."""
    rows = len(fare)
    payment = rng.choice(np.array(list(PAYMENT_SHARES)), rows, p=list(PAYMENT_SHARES.values()))
    # Card tips go through the meter: most riders pick a 15-25% button, some tip nothing.
    share = np.clip(rng.normal(0.2, 0.045, rows), 0.05, 0.4)
    card_tip = np.where(rng.random(rows) < _CARD_NO_TIP, 0.0, fare * share)
    # Cash tips go into the driver's pocket, unrecorded; a few drivers key one in anyway.
    cash_tip = np.where(rng.random(rows) < _CASH_RECORDED, rng.uniform(0.5, 3.0, rows), 0.0)
    tip = np.where(payment == CARD, card_tip, np.where(payment == CASH, cash_tip, 0.0))
    return payment, np.round(tip, 2)


def generate_month(year: int, month: int, rows: int = 80_000, seed: int = 42) -> pd.DataFrame:
    """Return ``rows`` synthetic green-taxi trips of one month in the TLC schema."""
    if rows < 0:
        raise DataError(f"rows must be >= 0, got {rows}")
    weights, slowness, pair_minutes = _city()
    rng = np.random.default_rng([seed, year, month])
    start = np.datetime64(f"{year:04d}-{month:02d}-01T00:00:00", "us")
    end = (
        np.datetime64(f"{year + 1:04d}-01-01", "us")
        if month == 12
        else np.datetime64(f"{year:04d}-{month + 1:02d}-01", "us")
    )
    span_s = int((end - start) / np.timedelta64(1, "s"))

    # Pickup times: denser by day than by night (hour-of-day profile), uniform over days.
    hour_profile = np.array(
        [
            2,
            1.2,
            0.8,
            0.6,
            0.6,
            1,
            2.5,
            4.5,
            5.5,
            5,
            4.5,
            4.5,
            4.6,
            4.7,
            5,
            5.5,
            6,
            6.5,
            6.2,
            5.2,
            4.2,
            3.6,
            3.2,
            2.6,
        ]
    )
    days = span_s // 86_400
    day = rng.integers(0, days, rows)
    hour = rng.choice(24, rows, p=hour_profile / hour_profile.sum())
    second = rng.integers(0, 3_600, rows)
    pickup = start + ((day * 86_400 + hour * 3_600 + second) * 1_000_000).astype("timedelta64[us]")
    # Sort now, while only pickup and hour exist: every later draw is per-row independent, so
    # the frame comes out in pickup order without reordering twenty columns afterwards.
    order = np.argsort(pickup, kind="stable")
    pickup, hour = pickup[order], hour[order]

    pu = rng.choice(N_ZONES + 1, rows, p=weights)
    # Most rides stay near their pickup zone: half the time the dropoff is a neighbour.
    near = np.clip(pu + rng.integers(-6, 7, rows), 1, N_ZONES)
    far = rng.choice(N_ZONES + 1, rows, p=weights)
    do = np.where(rng.random(rows) < 0.5, near, far)

    distance = np.round(rng.lognormal(0.75, 0.85, rows), 2)
    rush = np.isin(hour, [7, 8, 9, 16, 17, 18, 19])
    night = (hour < 6) | (hour >= 22)
    mph = np.where(rush, 9.5, np.where(night, 17.0, 12.5)) / np.sqrt(slowness[pu] * slowness[do])
    minutes = 2.0 + distance / mph * 60.0 + pair_minutes[pu, do] + rng.gamma(2.0, 1.5, rows) - 3.0
    minutes = np.maximum(minutes, 0.5)

    # The dirt real files have, so the training filter matters.
    dirt = rng.random(rows)
    minutes = np.where(dirt < 0.004, -rng.uniform(0, 30, rows), minutes)  # dropoff before pickup
    minutes = np.where((dirt >= 0.004) & (dirt < 0.008), 0.0, minutes)  # zero-length
    minutes = np.where(
        (dirt >= 0.008) & (dirt < 0.011), rng.uniform(120, 1_440, rows), minutes
    )  # meter left running for hours
    distance = np.where(rng.random(rows) < 0.02, 0.0, distance)
    dropoff = pickup + (minutes * 60_000_000).astype("int64").astype("timedelta64[us]")

    street_hail = rng.random(rows) < 0.97
    unknown = rng.random(rows) < 0.06  # the rows where real files leave passenger info null
    fare = np.round(np.maximum(2.5 + 2.5 * distance + 0.5 * np.maximum(minutes, 0), 2.5), 2)
    # The first generator's tip draws, still made so every later column keeps its values for a
    # seed; payment and tips now come from their own generator (see _payments).
    rng.random(rows), rng.uniform(0.1, 0.25, rows)
    payment, tip = _payments(fare, np.random.default_rng([seed, year, month, _PAYMENT_STREAM]))
    extra = np.where(night | rush, 0.5, 0.0)
    surcharge = np.where(rng.random(rows) < 0.2, 2.75, 0.0)
    tolls = np.where(distance > 10, np.where(rng.random(rows) < 0.3, 6.55, 0.0), 0.0)
    total = np.round(fare + tip + extra + 0.5 + 0.3 + tolls + surcharge, 2)

    def nullable(values: np.ndarray) -> np.ndarray:
        return np.where(unknown, np.nan, values)

    frame = pd.DataFrame(
        {
            "VendorID": rng.choice([1, 2], rows, p=[0.2, 0.8]).astype("int64"),
            "lpep_pickup_datetime": pickup,
            "lpep_dropoff_datetime": dropoff,
            # pandas 3's own string dtype (NaN for null), which arrow writes as ``string``.
            "store_and_fwd_flag": pd.array(
                np.where(unknown, None, np.where(rng.random(rows) < 0.01, "Y", "N")),
                dtype=pd.StringDtype(na_value=np.nan),
            ),
            "RatecodeID": nullable(np.where(rng.random(rows) < 0.97, 1.0, 5.0)),
            "PULocationID": pu.astype("int64"),
            "DOLocationID": do.astype("int64"),
            "passenger_count": nullable(
                rng.choice([1.0, 2.0, 3.0, 5.0, 6.0], rows, p=[0.82, 0.1, 0.03, 0.03, 0.02])
            ),
            "trip_distance": distance,
            "fare_amount": fare,
            "extra": extra,
            "mta_tax": np.full(rows, 0.5),
            "tip_amount": tip,
            "tolls_amount": tolls,
            "ehail_fee": np.full(rows, np.nan),
            "improvement_surcharge": np.full(rows, 0.3),
            "total_amount": total,
            "payment_type": nullable(payment),
            "trip_type": nullable(np.where(street_hail, 1.0, 2.0)),
            "congestion_surcharge": nullable(surcharge),
        }
    )
    return frame


def write_month(frame: pd.DataFrame, target: str | Path, row_group_size: int = 131_072) -> None:
    """Write a trips frame as TLC-schema parquet, atomically (local path or ``s3://``)."""
    try:
        table = pa.Table.from_pandas(frame, schema=TLC_SCHEMA, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, KeyError) as exc:
        raise DataError(f"trips do not fit the TLC schema: {exc}") from exc
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, row_group_size=row_group_size, compression="snappy")
    write_bytes(str(target), sink.getvalue().to_pybytes())


def _source(path: str | Path) -> tuple[str, Any]:
    """Return a label and what pyarrow opens: a local path, or an S3 object's or URL's bytes."""
    label = str(path)
    if is_http(label):
        buffer = io.BytesIO()
        download(label, buffer)
        return label, pa.BufferReader(buffer.getvalue())
    if is_s3(label):
        try:
            return label, pa.BufferReader(read_bytes(label))
        except DeployError as exc:
            raise DataError(f"trip data {label} cannot be read: {exc}") from exc
    return label, local_file(path, "trip data file")


def _kind(field_type: pa.DataType) -> str | None:
    if pa.types.is_timestamp(field_type) or pa.types.is_date(field_type):
        return "timestamp"
    if pa.types.is_integer(field_type) or pa.types.is_floating(field_type):
        return "number"
    if pa.types.is_null(field_type):  # an all-null column: typed nothing, fine for our checks
        return None
    return "other"


def read_trips(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a TLC parquet file (local or ``s3://``), checking it is parquet with our columns.

    Yellow-taxi files work too: their ``tpep_`` timestamps are renamed to the green ``lpep_``
    names. Nullable integer columns (real files have null ``PULocationID``) come back as float.
    """
    label, source = _source(path)
    try:
        schema = pq.read_schema(source)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{label} is not a readable parquet file: {exc}") from exc
    renames = yellow_renames(schema.names)
    names = [renames.get(name, name) for name in schema.names]
    wanted = list(columns or REQUIRED_COLUMNS)
    missing = [c for c in dict.fromkeys([*REQUIRED_COLUMNS, *wanted]) if c not in names]
    if missing:
        raise DataError(f"{label} lacks required columns: {', '.join(missing)}")
    types = dict(zip(names, schema.types, strict=True))
    wrong = [
        f"{column} ({types[column]}, expected {kind})"
        for column, kind in _REQUIRED_KINDS.items()
        if _kind(types[column]) not in (kind, None)
    ]
    if wrong:
        raise DataError(f"{label} has columns of the wrong type: {', '.join(wrong)}")
    inverse = {green: yellow for yellow, green in renames.items()}
    try:
        if isinstance(source, pa.BufferReader):
            source.seek(0)
        table = pq.read_table(source, columns=[inverse.get(c, c) for c in wanted])
    except (pa.ArrowInvalid, OSError) as exc:
        raise DataError(f"{label} could not be read: {exc}") from exc
    return table.rename_columns([renames.get(n, n) for n in table.column_names]).to_pandas()
