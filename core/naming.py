"""The model's name: what every artifact manifest and every prediction event calls it.

A module of its own so that ``deploy_modes.core`` can export it without importing sklearn.
"""

__all__ = ["MODEL_NAME"]

MODEL_NAME = "ride_duration_prediction_model"  # the course's name, seen by event consumers
