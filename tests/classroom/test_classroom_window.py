"""The rolling window: exact throughput, percentiles and per-second series from given times."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from deploy_modes.classroom.window import Window, percentile


def test_percentile_is_the_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.50) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([7.0], 0.99) == 7.0
    assert percentile([], 0.5) is None


@given(st.lists(st.floats(0, 1e6, allow_nan=False), min_size=1), st.floats(0.01, 1.0))
def test_percentile_is_a_member_and_splits_the_values(values: list[float], q: float) -> None:
    found = percentile(values, q)
    assert found in values
    below_or_equal = sum(v <= found for v in values)
    assert below_or_equal >= math.ceil(q * len(values))


def test_throughput_counts_only_complete_seconds() -> None:
    window = Window()
    for k in range(10):  # 10 predictions in each of the seconds 0..9
        for j in range(10):
            window.add(k + j / 10, 0.001)
    assert window.throughput(10.5, seconds=5) == 10.0
    window.add(10.2, 0.001)  # the current second is not complete: not counted yet
    assert window.throughput(10.5, seconds=5) == 10.0
    assert window.throughput(30.0, seconds=5) == 0.0


def test_latency_percentiles_are_in_milliseconds_over_the_last_seconds() -> None:
    window = Window()
    for k in range(100):
        window.add(5.5, (k + 1) / 1000)  # 1..100 ms in second 5
    window.add(1.0, 10.0)  # a 10 s outlier, older than the 3 s span below
    p50, p99 = window.latency_ms(6.1, seconds=3)
    assert (p50, p99) == (50.0, 99.0)
    assert window.latency_ms(20.0, seconds=3) == (None, None)


def test_series_has_one_point_per_second_and_carries_the_backlog_over() -> None:
    window = Window()
    window.backlog(0.5, 3)
    window.add(1.2, 0.5)
    window.add(1.7, 0.25)
    window.backlog(2.1, 9)
    t, throughput, p99, backlog = window.series(4.0, seconds=4)
    assert t == [0.0, 1.0, 2.0, 3.0]
    assert throughput == [0.0, 2.0, 0.0, 0.0]
    assert p99 == [None, 500.0, None, None]
    assert backlog == [3, 3, 9, 9]


def test_old_seconds_are_dropped() -> None:
    window = Window(history=10)
    window.add(0.5, 1.0)
    window.add(50.5, 1.0)
    t, throughput, _, _ = window.series(51.0, seconds=60)
    assert throughput[0] == 0.0 and sum(throughput) == 1.0
    assert len(t) == 51
