"""Unit tests of the interval logic and templates (pure, no I/O)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime

import pytest

from deploy_modes.batch.intervals import (
    DEFAULT_OUTPUT,
    Interval,
    backfill,
    check_template,
    month_interval,
    parse_run_date,
    previous_interval,
    render,
    resolve_intervals,
)
from deploy_modes.core.errors import DeployError


def test_run_date_scores_the_previous_month_like_get_paths() -> None:
    interval = previous_interval(datetime(2021, 4, 1), "month")
    assert (interval.start, interval.end) == (datetime(2021, 3, 1), datetime(2021, 4, 1))
    january = previous_interval(datetime(2021, 1, 15), "month")
    assert january.label == "2020-12"


def test_windows_are_the_hour_or_day_before_the_run_date() -> None:
    hour = previous_interval(parse_run_date("2021-03-05T04:30"), "hour")
    assert (hour.start, hour.end) == (datetime(2021, 3, 5, 3), datetime(2021, 3, 5, 4))
    assert hour.label == "2021-03-05T03"
    assert hour.id_prefix == "2021/03/05T03"
    day = previous_interval(datetime(2021, 3, 1, 0, 5), "day")
    assert (day.start, day.end) == (datetime(2021, 2, 28), datetime(2021, 3, 1))


def test_backfill_is_month_by_month_across_years() -> None:
    months = backfill("2020-11", "2021-02")
    assert [m.label for m in months] == ["2020-11", "2020-12", "2021-01", "2021-02"]
    assert months[1].end == datetime(2021, 1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"month": "2021-13"}, "YYYY-MM"),
        ({"month": "March"}, "YYYY-MM"),
        ({"month": "2021-03", "run_date": "2021-04-01"}, "only one"),
        ({"first": "2021-03"}, "both --from"),
        ({"first": "2021-05", "last": "2021-03"}, "after --to"),
        ({"first": "1000-01", "last": "2021-03"}, "at most"),
        ({"run_date": "yesterday"}, "--run-date must look like"),
        ({"run_date": "2021-04-01", "window": "5m"}, "--window must be"),
        ({"month": "2021-03", "window": "1h"}, "needs --run-date"),
    ],
)
def test_bad_interval_options_are_one_clear_error(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(DeployError, match=message):
        resolve_intervals(**kwargs)


def test_no_option_means_the_month_before_now() -> None:
    (interval,) = resolve_intervals(now=datetime(2026, 11, 26, 23, 0))
    assert interval.label == "2026-10"


def test_default_output_is_the_course_layout() -> None:
    path = render(DEFAULT_OUTPUT, month_interval(2021, 3), "green", "abc123")
    assert path == "output/taxi_type=green/year=2021/month=03/abc123.parquet"


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("out/{yeer}.parquet", "unknown field {yeer}"),
        ("out/{year:04q}.parquet", "bad template"),
        ("out/{year.real.x}.parquet", "bad template"),
        ("out/{0}.parquet", "bad template"),
        ("out/{year.parquet", "bad template"),
    ],
)
def test_bad_templates_are_one_clear_error(template: str, message: str) -> None:
    with pytest.raises(DeployError, match=message):
        render(template, month_interval(2021, 3), "green")


def test_a_window_template_must_tell_windows_apart() -> None:
    check_template("o/{year}/{month}/{day}.parquet", "day", "--output")
    with pytest.raises(DeployError, match=r"lacks \{hour\}"):
        check_template("o/{year}/{month}/{day}.parquet", "hour", "--output")


def test_interval_fields() -> None:
    interval = Interval(datetime(2021, 3, 5, 4), datetime(2021, 3, 5, 5), "hour")
    assert interval.fields() == {"year": 2021, "month": 3, "day": 5, "hour": 4}


def test_month_errors_name_the_option_that_was_wrong() -> None:
    with pytest.raises(DeployError, match=r"^--from must look like YYYY-MM.*'2021-3'"):
        resolve_intervals(first="2021-3", last="2021-04")
    with pytest.raises(DeployError, match=r"^--to must look like YYYY-MM.*'0000-01'"):
        resolve_intervals(first="2021-03", last="0000-01")
    with pytest.raises(DeployError, match=r"^--month must look like YYYY-MM"):
        resolve_intervals(month="2021-00")


def test_the_trip_file_facts_need_neither_pandas_nor_arrow() -> None:
    # The column list and month parser are shared by the pandas reader and the batch readers
    # from one module; it must stay importable without the heavy libraries.
    code = (
        "import sys; import deploy_modes.core.tlc; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
