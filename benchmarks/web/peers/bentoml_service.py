"""BentoML service: the pickled pipeline behind ``POST /predict`` with our ride body."""

from __future__ import annotations

import os
import pickle

import bentoml
from ride_features import MODEL_PICKLE, feature_dicts

__all__ = ["RideDuration"]


@bentoml.service(workers=int(os.environ.get("PEER_WORKERS", "1")), traffic={"timeout": 30})
class RideDuration:
    """Predict one ride's duration (minutes) with the course's pipeline."""

    def __init__(self) -> None:
        with open(MODEL_PICKLE, "rb") as f_in:
            self.pipeline = pickle.load(f_in)

    @bentoml.api
    def predict(self, PULocationID: int, DOLocationID: int, trip_distance: float) -> dict:
        """Return ``{"duration": minutes}`` for one ride."""
        features = feature_dicts([PULocationID], [DOLocationID], [trip_distance])
        return {"duration": float(self.pipeline.predict(features)[0])}
