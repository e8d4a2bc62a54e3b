"""Trip data: the generator's schema, determinism and realism; the reader's checks."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from deploy_modes.core.data import (
    CARD,
    CASH,
    REQUIRED_COLUMNS,
    TLC_SCHEMA,
    generate_month,
    month_file,
    parse_month,
    read_trips,
    write_month,
)
from deploy_modes.core.errors import DataError, DeployError
from deploy_modes.core.features import duration_minutes
from deploy_modes.core.storage import aws_client
from deploy_modes.core.training import prepare

ROWS = 20_000
POPULAR = {74, 75, 41, 42, 166, 7, 82, 95, 97, 129, 244, 43, 65, 181, 24, 116, 152, 260}


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    """Return one generated month, shared by the realism tests."""
    return generate_month(2021, 3, rows=ROWS, seed=11)


@pytest.fixture(scope="module")
def minutes(month: pd.DataFrame) -> pd.Series:
    """Return the durations of the generated month, in minutes."""
    return duration_minutes(month, "lpep_pickup_datetime", "lpep_dropoff_datetime")


# -- schema -----------------------------------------------------------------------------------
def test_written_file_has_exactly_the_tlc_schema(month: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / month_file(2021, 3)
    write_month(month, path)
    assert pq.read_schema(path).remove_metadata().equals(TLC_SCHEMA)
    assert pq.read_metadata(path).num_rows == ROWS


def test_frame_columns_and_dtypes_match_the_tlc_schema(month: pd.DataFrame) -> None:
    assert list(month.columns) == TLC_SCHEMA.names
    for field in TLC_SCHEMA:
        dtype = month[field.name].dtype
        if pa.types.is_timestamp(field.type):
            assert dtype == np.dtype("datetime64[us]"), field.name
        elif pa.types.is_string(field.type):
            # pandas 3's string dtype, not object: arrow writes it as ``string``.
            assert isinstance(dtype, pd.StringDtype), field.name
        else:
            assert dtype == np.dtype(field.type.to_pandas_dtype()), field.name


def test_store_and_fwd_flag_is_y_n_or_null(month: pd.DataFrame) -> None:
    flags = month["store_and_fwd_flag"]
    assert set(flags.dropna().unique()) == {"Y", "N"}
    assert flags.isna().any()


def test_month_file_is_the_tlc_name() -> None:
    assert month_file(2021, 3) == "green_tripdata_2021-03.parquet"
    assert month_file(2019, 12, "yellow") == "yellow_tripdata_2019-12.parquet"


# -- determinism ------------------------------------------------------------------------------
def test_same_seed_same_rides() -> None:
    pd.testing.assert_frame_equal(
        generate_month(2021, 5, 2_000, 3), generate_month(2021, 5, 2_000, 3)
    )


def test_other_seed_or_month_other_rides() -> None:
    base = generate_month(2021, 5, 2_000, 3)
    assert not base["PULocationID"].equals(generate_month(2021, 5, 2_000, 4)["PULocationID"])
    assert not base["PULocationID"].equals(generate_month(2021, 6, 2_000, 3)["PULocationID"])


def test_row_count_and_empty_month() -> None:
    assert len(generate_month(2021, 1, rows=123)) == 123
    empty = generate_month(2021, 1, rows=0)
    assert list(empty.columns) == TLC_SCHEMA.names and empty.empty


def test_negative_rows_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="rows must be >= 0"):
        generate_month(2021, 1, rows=-1)


@pytest.mark.parametrize(("year", "mon"), [(2021, 2), (2020, 2), (2021, 12)])
def test_pickups_fall_inside_the_month(year: int, mon: int) -> None:
    frame = generate_month(year, mon, rows=3_000)
    first = pd.Timestamp(year, mon, 1)
    after = pd.Timestamp(year + (mon == 12), mon % 12 + 1, 1)
    pickups = frame["lpep_pickup_datetime"]
    assert pickups.min() >= first and pickups.max() < after
    assert pickups.is_monotonic_increasing


# -- realism ----------------------------------------------------------------------------------
def test_zones_are_tlc_ids_and_popular_zones_dominate(month: pd.DataFrame) -> None:
    for column in ("PULocationID", "DOLocationID"):
        assert month[column].between(1, 265).all()
    top = set(month["PULocationID"].value_counts().index[:20])
    assert len(top & POPULAR) >= 12
    # ... but the long tail is there too: most of the city appears.
    assert month["PULocationID"].nunique() > 200


def test_distances_are_log_normal(month: pd.DataFrame) -> None:
    positive = month["trip_distance"][month["trip_distance"] > 0]
    logs = np.log(positive)
    assert abs(logs.skew()) < 0.3  # the log is symmetric ...
    assert positive.skew() > 2  # ... the miles are right-skewed
    assert 1.5 < positive.median() < 3.0


def test_durations_depend_on_distance_and_hour(month: pd.DataFrame, minutes: pd.Series) -> None:
    clean = minutes.between(1, 60) & (month["trip_distance"] > 0)
    frame = month[clean].assign(minutes=minutes[clean])
    assert frame["minutes"].corr(frame["trip_distance"]) > 0.6
    mph = frame["trip_distance"] / (frame["minutes"] / 60)
    hour = frame["lpep_pickup_datetime"].dt.hour
    assert mph[hour.isin([17, 18])].median() < mph[hour.isin([1, 2, 3])].median()


def test_files_carry_the_dirt_real_files_have(month: pd.DataFrame, minutes: pd.Series) -> None:
    assert (minutes < 0).sum() > 0  # dropoff before pickup
    assert (minutes == 0).sum() > 0  # zero-length
    assert (minutes > 120).sum() > 0  # meter left running
    assert month["passenger_count"].isna().sum() > 0
    assert (month["trip_distance"] == 0).sum() > 0


# sha256 of every column but the payment ones, for 5,000 rides of 2021-03 with seed 7, as the
# generator wrote them before tips became realistic: the payment generator is a separate one.
_RIDES_BEFORE_TIPS = "410f6fffe582576fd5b7548745f8a8de2731d1291161f629057a161b207d4dab"
_PAYMENT_COLUMNS = ("tip_amount", "total_amount", "payment_type")


def test_realistic_tips_left_every_other_column_as_it_was() -> None:
    frame = generate_month(2021, 3, rows=5_000, seed=7)
    others = frame[[c for c in TLC_SCHEMA.names if c not in _PAYMENT_COLUMNS]]
    digest = hashlib.sha256(pd.util.hash_pandas_object(others).to_numpy().tobytes()).hexdigest()
    assert digest == _RIDES_BEFORE_TIPS


def test_card_rides_tip_a_share_of_the_fare_and_cash_tips_are_mostly_zero(
    month: pd.DataFrame,
) -> None:
    card = month[month["payment_type"] == CARD]
    cash = month[month["payment_type"] == CASH]
    assert 0.45 < len(card) / len(month) < 0.6 and 0.35 < len(cash) / len(month) < 0.5
    tipped = card[card["tip_amount"] > 0]
    assert 0.8 < len(tipped) / len(card) < 0.95  # some card riders press "no tip"
    share = tipped["tip_amount"] / tipped["fare_amount"]
    assert share.quantile(0.25) > 0.15 and share.quantile(0.75) < 0.25
    assert (cash["tip_amount"] == 0).mean() > 0.95
    others = month[month["payment_type"].isin([3.0, 4.0, 5.0])]
    assert len(others) > 0 and (others["tip_amount"] == 0).all()  # no charge, dispute: no tip
    assert (month["tip_amount"] >= 0).all()


def test_total_is_the_sum_of_its_parts(month: pd.DataFrame) -> None:
    parts = [
        "fare_amount",
        "tip_amount",
        "extra",
        "mta_tax",
        "improvement_surcharge",
        "tolls_amount",
        "congestion_surcharge",
    ]
    total = month[parts].fillna({"congestion_surcharge": 0.0}).sum(axis=1)
    # Nullable congestion surcharge rows still paid it (only the column is blanked in real files).
    known = month["congestion_surcharge"].notna()
    assert np.allclose(total[known], month.loc[known, "total_amount"], atol=0.011)


def test_training_filter_drops_a_few_percent(month: pd.DataFrame) -> None:
    _, durations, drops = prepare(month)
    assert 0.90 * ROWS < len(durations) < 0.99 * ROWS
    assert drops["duration_out_of_range"] == ROWS - len(durations)
    assert durations.min() >= 1 and durations.max() <= 60


# -- writing ----------------------------------------------------------------------------------
def test_write_refuses_a_frame_that_does_not_fit_and_writes_nothing(tmp_path: Path) -> None:
    frame = generate_month(2021, 1, rows=10)
    frame["PULocationID"] = "not a zone"
    target = tmp_path / "out.parquet"
    with pytest.raises(DataError, match="TLC schema"):
        write_month(frame, target)
    assert list(tmp_path.iterdir()) == []


def test_write_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(DeployError, match="is not a directory"):
        write_month(generate_month(2021, 1, rows=10), tmp_path / "file" / "out.parquet")


# -- reading ----------------------------------------------------------------------------------
def test_read_returns_the_required_columns(data_dir: Path) -> None:
    frame = read_trips(data_dir / month_file(2021, 1))
    assert list(frame.columns) == REQUIRED_COLUMNS
    assert len(frame) > 0


def test_read_missing_file_or_a_directory(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_trips(tmp_path / "nope.parquet")
    with pytest.raises(DataError, match="trip data file is a directory, not a file"):
        read_trips(tmp_path)


@pytest.mark.parametrize(
    "content",
    [b"", b"VendorID,PULocationID\n1,74\n", b"PAR1" + b"\x00" * 64, bytes(range(256)) * 40],
    ids=["empty", "csv", "fake-magic", "garbage"],
)
def test_read_refuses_a_non_parquet_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "green_tripdata_2021-01.parquet"
    path.write_bytes(content)
    with pytest.raises(DataError, match="not a readable parquet file"):
        read_trips(path)


def test_read_names_every_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "partial.parquet"
    pq.write_table(pa.table({"PULocationID": [1], "VendorID": [2]}), path)
    with pytest.raises(DataError) as info:
        read_trips(path)
    message = str(info.value)
    for column in set(REQUIRED_COLUMNS) - {"PULocationID"}:
        assert column in message
    assert "PULocationID," not in message


def test_read_a_schema_less_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "nothing.parquet"
    pq.write_table(pa.table({}), path)
    with pytest.raises(DataError, match="lacks required columns: lpep_pickup_datetime"):
        read_trips(path)


def test_read_names_a_missing_requested_column(data_dir: Path) -> None:
    with pytest.raises(DataError, match="lacks required columns: nope"):
        read_trips(data_dir / month_file(2021, 1), columns=["trip_distance", "nope"])


def test_read_refuses_wrong_column_types(tmp_path: Path) -> None:
    frame = generate_month(2021, 1, rows=10)
    frame["trip_distance"] = frame["trip_distance"].astype(str)
    frame["lpep_pickup_datetime"] = frame["lpep_pickup_datetime"].astype(str)
    path = tmp_path / "strings.parquet"
    frame.to_parquet(path)
    with pytest.raises(DataError, match=r"wrong type: lpep_pickup_datetime .*trip_distance"):
        read_trips(path)


def test_read_a_real_style_file_with_null_zones_and_ns_timestamps(tmp_path: Path) -> None:
    # Real TLC months have null PULocationID (so pandas sees float64) and older files
    # store nanosecond timestamps.
    frame = generate_month(2021, 1, rows=500)
    frame["PULocationID"] = frame["PULocationID"].astype("float64")
    frame.loc[:9, "PULocationID"] = np.nan
    for column in ("lpep_pickup_datetime", "lpep_dropoff_datetime"):
        frame[column] = frame[column].astype("datetime64[ns]")
    path = tmp_path / "real.parquet"
    frame.to_parquet(path)
    read = read_trips(path)
    assert read["PULocationID"].isna().sum() == 10
    dicts, _, drops = prepare(read)
    assert drops["missing_zone"] == 10
    assert all(not d["PU_DO"].startswith("nan") for d in dicts)


def test_read_a_yellow_file(tmp_path: Path) -> None:
    frame = generate_month(2021, 1, rows=200).rename(
        columns={
            "lpep_pickup_datetime": "tpep_pickup_datetime",
            "lpep_dropoff_datetime": "tpep_dropoff_datetime",
        }
    )
    path = tmp_path / month_file(2021, 1, "yellow")
    frame.to_parquet(path)
    read = read_trips(path, columns=["trip_distance", "lpep_pickup_datetime"])
    assert list(read.columns) == ["trip_distance", "lpep_pickup_datetime"]
    assert len(read) == 200


# -- months -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [("2021-03", (2021, 3)), (" 1999-12 ", (1999, 12))])
def test_parse_month(text: str, expected: tuple[int, int]) -> None:
    assert parse_month(text) == expected


@pytest.mark.parametrize(
    "text", ["2021-13", "2021-00", "2021-3", "21-03", "march", "", "2021-03-01", "0000-01"]
)
def test_parse_month_refuses_bad_months(text: str) -> None:
    with pytest.raises(DataError, match=r"^month must look like YYYY-MM"):
        parse_month(text)
    with pytest.raises(DataError, match=r"^--val-month must look like YYYY-MM"):
        parse_month(text, "--val-month")


# -- S3 (real moto server) --------------------------------------------------------------------
@pytest.mark.integration
def test_write_and_read_a_month_on_s3(moto_server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.url)
    bucket = f"trips-{uuid.uuid4().hex[:8]}"
    aws_client("s3").create_bucket(
        Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    uri = f"s3://{bucket}/green/{month_file(2021, 4)}"
    frame = generate_month(2021, 4, rows=300)
    write_month(frame, uri)
    read = read_trips(uri)
    pd.testing.assert_frame_equal(read, frame[REQUIRED_COLUMNS])
    with pytest.raises(DataError, match="does not exist"):
        read_trips(f"s3://{bucket}/green/missing.parquet")
