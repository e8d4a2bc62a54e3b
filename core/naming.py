"""The models' names and targets: what manifests record and what prediction events call them.

A module of its own so that ``deploy_modes.core`` can export it without importing sklearn.
"""

__all__ = [
    "DURATION",
    "EVENT_FIELDS",
    "MODEL_NAME",
    "MODEL_NAMES",
    "TARGETS",
    "TIP_AMOUNT",
    "TIP_MODEL_NAME",
]

DURATION = "duration"  # minutes from pickup to dropoff; the course's model
TIP_AMOUNT = "tip_amount"  # the recorded tip in dollars, as the TLC files' column
TARGETS = (DURATION, TIP_AMOUNT)
MODEL_NAME = "ride_duration_prediction_model"  # the course's name, seen by event consumers
TIP_MODEL_NAME = "tip_amount_prediction_model"
MODEL_NAMES = {DURATION: MODEL_NAME, TIP_AMOUNT: TIP_MODEL_NAME}
# The field of a prediction event's ``prediction`` that carries each target's value; the
# duration's is the course's, so its events stay exactly as the course's consumers read them.
EVENT_FIELDS = {DURATION: "ride_duration", TIP_AMOUNT: "tip_amount"}
