"""Property tests of ``score_chunk``: any values, no crash, every row accounted for once."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from deploy_modes.batch.job import DROP_REASONS, score_chunk
from deploy_modes.batch.readers import Chunk
from deploy_modes.core.scoring import ModelService

ANY_FLOAT = st.floats(allow_nan=True, allow_infinity=True, width=64)
ZONE = st.one_of(st.integers(-5, 300).map(float), ANY_FLOAT)
ROW = st.tuples(ZONE, ZONE, ANY_FLOAT, ANY_FLOAT)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(ROW, max_size=40), offset=st.integers(0, 10**9))
def test_every_row_is_scored_or_dropped_exactly_once(
    model_service: ModelService, rows: list[tuple[float, float, float, float]], offset: int
) -> None:
    pu, do, distance, duration = (
        (np.array(col, dtype="float64") for col in zip(*rows, strict=True))
        if rows
        else (np.array([], "float64"),) * 4
    )
    chunk = Chunk(
        offset=offset,
        pickup=pa.array([0] * len(rows), pa.timestamp("us")),
        duration=duration,
        pu=pu,
        do=do,
        distance=distance,
    )
    table, counts = score_chunk(chunk, model_service, "2021/03")
    assert set(counts) == set(DROP_REASONS)
    assert table.num_rows + sum(counts.values()) == len(rows)
    predicted = np.asarray(table.column("predicted_duration"))
    assert np.isfinite(predicted).all()
    kept = [int(i.split("_")[1]) - offset for i in table.column("ride_id").to_pylist()]
    for index in kept:
        p, d, x, minutes = rows[index]
        assert 1 <= p <= 265 and 1 <= d <= 265 and 0 <= x <= 500 and 1 <= minutes <= 60
        expected = model_service.predict_one(
            {"PULocationID": int(p), "DOLocationID": int(d), "trip_distance": x}
        )
        assert abs(predicted[kept.index(index)] - expected) <= 1e-9
