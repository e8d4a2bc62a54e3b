"""The baseline: the Zoomcamp's ``predict.py``, written the course's way on purpose.

Flask, the model unpickled at import, ``DictVectorizer.transform`` per request (inside
``pipeline.predict``), no validation; served by gunicorn with one sync worker. It loads our
artifact's ``model.pkl`` (a ``DictVectorizer`` + estimator pipeline) from ``BASELINE_MODEL_PKL``.
Only the benchmark runs it: it is the thing being compared against, not an example to copy.
"""

import os
import pickle

from flask import Flask, jsonify, request

with open(os.environ["BASELINE_MODEL_PKL"], "rb") as f_in:
    pipeline = pickle.load(f_in)


def prepare_features(ride):
    features = {}
    features["PU_DO"] = "{}_{}".format(ride["PULocationID"], ride["DOLocationID"])
    features["trip_distance"] = ride["trip_distance"]
    return features


def predict(features):
    preds = pipeline.predict(features)
    return float(preds[0])


app = Flask("duration-prediction")


@app.route("/predict", methods=["POST"])
def predict_endpoint():
    ride = request.get_json()

    features = prepare_features(ride)
    pred = predict(features)

    result = {"duration": pred}

    return jsonify(result)
