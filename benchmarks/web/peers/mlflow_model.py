"""MLflow pyfunc model of the pickled pipeline, in MLflow's "models from code" form.

``python mlflow_model.py MODEL_PKL OUT_DIR`` (in the MLflow venv) saves it; ``mlflow models
serve -m OUT_DIR`` serves ``POST /invocations`` with ``{"dataframe_records": [ride, ...]}``.
"""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel
from ride_features import feature_dicts

__all__ = ["RideDuration", "save"]


class RideDuration(PythonModel):
    """Predict ride durations (minutes) with the course's pipeline."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Unpickle the pipeline saved as the ``pipeline`` artifact."""
        with open(context.artifacts["pipeline"], "rb") as f_in:
            self.pipeline = pickle.load(f_in)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> list[float]:
        """Return one duration per row of ``PULocationID``, ``DOLocationID``, ``trip_distance``."""
        features = feature_dicts(
            model_input["PULocationID"], model_input["DOLocationID"], model_input["trip_distance"]
        )
        return [float(minutes) for minutes in self.pipeline.predict(features)]


def save(model_pkl: Path, out: Path) -> None:
    """Save the model (this file, the features module and the pickle) into ``out``."""
    here = Path(__file__).resolve().parent
    mlflow.pyfunc.save_model(
        path=str(out),
        python_model=str(here / "mlflow_model.py"),
        artifacts={"pipeline": str(model_pkl)},
        code_paths=[str(here / "ride_features.py")],
    )


mlflow.models.set_model(RideDuration())

if __name__ == "__main__":
    save(Path(sys.argv[1]), Path(sys.argv[2]))
