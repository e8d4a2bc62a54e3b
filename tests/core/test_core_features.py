"""Features: the course's duration filter, defined once for training and batch."""

from __future__ import annotations

import numpy as np
import pandas as pd

from deploy_modes.core.features import MAX_DURATION_MIN, MIN_DURATION_MIN, in_duration_range

EDGES = [-5.0, 0.0, 0.999, 1.0, 30.0, 60.0, 60.001, 1_440.0, np.nan]
KEPT = [False, False, False, True, True, True, False, False, False]


def test_the_course_filter_keeps_one_to_sixty_minutes_both_included() -> None:
    assert (MIN_DURATION_MIN, MAX_DURATION_MIN) == (1.0, 60.0)
    assert in_duration_range(np.array(EDGES)).tolist() == KEPT


def test_the_filter_gives_the_same_mask_on_a_pandas_series() -> None:
    series = pd.Series(EDGES, index=range(10, 10 + len(EDGES)))
    mask = in_duration_range(series)
    assert isinstance(mask, pd.Series) and mask.tolist() == KEPT
    assert mask.index.equals(series.index)  # aligned, so frame.loc[mask] keeps the right rows
