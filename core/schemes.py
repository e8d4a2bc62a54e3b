"""Feature schemes: how to turn a ride into the features a model's vectorizer knows.

A scheme is derived from the ``DictVectorizer`` vocabulary, never assumed, so a model trained
the course's way (``PU_DO`` + ``trip_distance``), the homework way (``PULocationID`` and
``DOLocationID`` as strings, with or without ``trip_distance``) or on numeric zone IDs is
scored on the features it was fitted on. A vocabulary that fits none is refused at load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from deploy_modes.core.errors import ModelLoadError
from deploy_modes.core.validation import MAX_ZONE, MIN_ZONE

__all__ = ["DISTANCE", "PAIR", "SCHEMES", "TABLE_SIZE", "FeatureScheme", "scheme_for"]

TABLE_SIZE = MAX_ZONE + 1  # zone IDs index arrays directly; index 0 stays unused
DISTANCE = "trip_distance"
PAIR = "PU_DO"
_PU = "PULocationID"
_DO = "DOLocationID"
SCHEMES = {
    "pu_do": f"{PAIR}=<pu>_<do> tokens (+ {DISTANCE}), the course's features",
    "zone_tokens": f"{_PU}=<id> and {_DO}=<id> tokens (+ {DISTANCE}), the homework's features",
    "zone_ids": f"numeric {_PU}, {_DO} and/or {DISTANCE}",
}
_SAMPLE = 6  # feature names quoted when a vocabulary is refused


def _zone(text: str) -> int | None:
    """Return the zone a token value names, or None if no valid ride can produce it."""
    if text.isdigit() and str(int(text)) == text and MIN_ZONE <= int(text) <= MAX_ZONE:
        return int(text)
    return None


@dataclass(frozen=True, eq=False)
class FeatureScheme:
    """One way of building a ride's features, bound to the vocabulary it was derived from."""

    name: str
    vocabulary: Mapping[str, int]
    distance_column: int | None = None
    # pu_do: column of each pu * TABLE_SIZE + do pair; zone_tokens: column of each zone.
    pair_columns: np.ndarray | None = None
    pu_columns: np.ndarray | None = None
    do_columns: np.ndarray | None = None
    # zone_ids: columns holding the zone numbers themselves.
    pu_value_column: int | None = None
    do_value_column: int | None = None
    # Pairs for which a ride has no feature in the vocabulary: its answer is the intercept.
    unknown_pairs: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def width(self) -> int:
        """Return the number of columns the vectorizer produces."""
        return len(self.vocabulary)

    def ride_features(self, pu: int, do: int, distance: float) -> dict[str, Any]:
        """Return one ride's feature dict, built exactly as the model was trained."""
        features: dict[str, Any]
        if self.name == "pu_do":
            features = {PAIR: f"{pu}_{do}"}
        elif self.name == "zone_tokens":
            features = {_PU: str(pu), _DO: str(do)}
        else:
            features = {_PU: pu, _DO: do}
        if self.distance_column is not None:
            features[DISTANCE] = distance
        return features

    def matrix(self, pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> sp.csr_matrix:
        """Return the matrix ``DictVectorizer.transform`` would, without a dict per row."""
        n = len(pu)
        every = np.arange(n)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []

        def add_tokens(column: np.ndarray) -> None:
            known = column >= 0
            rows.append(every[known])
            cols.append(column[known])
            vals.append(np.ones(int(known.sum())))

        def add_values(column: int | None, values: np.ndarray) -> None:
            if column is not None:
                rows.append(every)
                cols.append(np.full(n, column))
                vals.append(np.asarray(values, dtype="float64"))

        if self.pair_columns is not None:
            add_tokens(self.pair_columns[pu * TABLE_SIZE + do])
        if self.pu_columns is not None and self.do_columns is not None:
            add_tokens(self.pu_columns[pu])
            add_tokens(self.do_columns[do])
        add_values(self.pu_value_column, pu)
        add_values(self.do_value_column, do)
        add_values(self.distance_column, distance)
        matrix = sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(n, self.width),
        )
        matrix.sort_indices()  # DictVectorizer's order: a dot product sums in the same order
        return matrix

    def token_rides(self) -> tuple[np.ndarray, np.ndarray]:
        """Return zone pairs that together use every token a valid ride can produce."""
        if self.pair_columns is not None:
            pairs = np.flatnonzero(self.pair_columns >= 0)
            return pairs // TABLE_SIZE, pairs % TABLE_SIZE
        if self.pu_columns is not None and self.do_columns is not None:
            pus = np.flatnonzero(self.pu_columns >= 0)
            dos = np.flatnonzero(self.do_columns >= 0)
            n = max(len(pus), len(dos))
            if n == 0:
                return np.empty(0, "int64"), np.empty(0, "int64")
            # Cycle the shorter list so both sets of tokens are each used at least once.
            pus = pus if len(pus) else np.array([MIN_ZONE])
            dos = dos if len(dos) else np.array([MIN_ZONE])
            return np.resize(pus, n), np.resize(dos, n)
        return np.empty(0, "int64"), np.empty(0, "int64")


def _columns(tokens: dict[int, int], size: int = TABLE_SIZE) -> np.ndarray:
    lookup = np.full(size, -1, dtype="int64")
    for key, column in tokens.items():
        lookup[key] = column
    return lookup


def _all_unknown(zones_unknown: np.ndarray, distance: int | None) -> np.ndarray:
    """Return the pairs for which a ride has no feature the model knows at all."""
    # With trip_distance in the vocabulary a ride always has one known feature; an unseen
    # pair is then the model's own answer for it, as in the course, not a silent constant.
    return zones_unknown if distance is None else np.zeros_like(zones_unknown)


def _refuse(vocabulary: Mapping[str, int], source: str) -> ModelLoadError:
    names = sorted({name.partition("=")[0] + ("=…" if "=" in name else "") for name in vocabulary})
    shown = ", ".join(names[:_SAMPLE]) + (", …" if len(names) > _SAMPLE else "")
    known = "; ".join(SCHEMES.values())
    return ModelLoadError(
        f"{source or 'the model'} expects features {shown or '(none)'} "
        f"({len(vocabulary)} vectorizer columns), which match no ride scheme this service "
        f"can build: {known}"
    )


def scheme_for(vocabulary: Mapping[str, int], source: str = "") -> FeatureScheme:
    """Return the scheme a vectorizer vocabulary was trained on; raise ModelLoadError if none."""
    distance = vocabulary.get(DISTANCE)
    others = {name: column for name, column in vocabulary.items() if name != DISTANCE}
    pairs: dict[int, int] = {}
    pus: dict[int, int] = {}
    dos: dict[int, int] = {}
    kinds = set()
    for name, column in others.items():
        prefix, eq, value = name.partition("=")
        if not eq:
            kinds.add("zone_ids" if name in (_PU, _DO) else "unknown")
        elif prefix == PAIR:
            kinds.add("pu_do")
            pu, sep, do = value.partition("_")
            zones = (_zone(pu), _zone(do)) if sep else (None, None)
            if zones[0] is not None and zones[1] is not None:
                pairs[zones[0] * TABLE_SIZE + zones[1]] = column
        elif prefix in (_PU, _DO):
            kinds.add("zone_tokens")
            zone = _zone(value)
            if zone is not None:
                (pus if prefix == _PU else dos)[zone] = column
        else:
            kinds.add("unknown")
    if kinds == {"pu_do"} and pairs:
        lookup = _columns(pairs, TABLE_SIZE * TABLE_SIZE)
        return FeatureScheme(
            "pu_do",
            vocabulary,
            distance,
            pair_columns=lookup,
            unknown_pairs=_all_unknown(lookup < 0, distance),
        )
    if kinds == {"zone_tokens"} and (pus or dos):
        pu_cols, do_cols = _columns(pus), _columns(dos)
        unknown = (pu_cols[:, None] < 0) & (do_cols[None, :] < 0)
        return FeatureScheme(
            "zone_tokens",
            vocabulary,
            distance,
            pu_columns=pu_cols,
            do_columns=do_cols,
            unknown_pairs=_all_unknown(unknown.ravel(), distance),
        )
    if kinds <= {"zone_ids"} and vocabulary:
        return FeatureScheme(
            "zone_ids",
            vocabulary,
            distance,
            pu_value_column=vocabulary.get(_PU),
            do_value_column=vocabulary.get(_DO),
            unknown_pairs=np.zeros(TABLE_SIZE * TABLE_SIZE, dtype=bool),
        )
    raise _refuse(vocabulary, source)
