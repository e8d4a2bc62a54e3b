"""MLServer custom runtime: the pickled pipeline behind MLServer's V2 (Open Inference) API.

``model-settings.json`` names this class; the request is the same columnar V2 body our
``/v2/models/{name}/infer`` takes (``PULocationID``, ``DOLocationID``, ``trip_distance``).
"""

from __future__ import annotations

import pickle

import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri
from ride_features import feature_dicts

__all__ = ["RideDuration"]


class RideDuration(MLModel):
    """Predict ride durations (minutes) with the course's pipeline."""

    async def load(self) -> bool:
        """Unpickle the pipeline named by ``parameters.uri``."""
        with open(await get_model_uri(self.settings), "rb") as f_in:
            self._pipeline = pickle.load(f_in)
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        """Answer one V2 infer request with a ``duration`` FP64 tensor."""
        columns = {tensor.name: NumpyCodec.decode_input(tensor) for tensor in payload.inputs}
        features = feature_dicts(
            columns["PULocationID"], columns["DOLocationID"], columns["trip_distance"]
        )
        durations = np.asarray(self._pipeline.predict(features), dtype=np.float64)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output("duration", durations)],
        )
