"""Convert a trusted pickle model into a skops artifact, proving its predictions unchanged."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import skops.io as sio

from deploy_modes.core.artifact import Trust, load_model, save_model
from deploy_modes.core.errors import DeployError
from deploy_modes.core.proof import Proof, probe_rides, prove
from deploy_modes.core.schemes import scheme_for

__all__ = ["Conversion", "convert_model"]


@dataclass(frozen=True)
class Conversion:
    """What a conversion wrote, and the proof that the new file predicts as the old one."""

    manifest: dict[str, Any]
    proof: Proof
    trusted_types: tuple[str, ...]


def convert_model(source: str | Path, out: str | Path, trust: Trust | None = None) -> Conversion:
    """Load ``source`` (a pickle needs ``trust.pickle``), write skops to ``out``, check equal."""
    loaded = load_model(source, trust)
    pipeline = loaded.pipeline
    scheme = scheme_for(pipeline.steps[0][1].vocabulary_, loaded.source)
    probe = probe_rides(scheme, pipeline)
    # Round-trip in memory first: nothing is written unless the skops copy predicts the same.
    blob = sio.dumps(pipeline)
    types = tuple(sio.get_untrusted_types(data=blob))
    copy = sio.loads(blob, trusted=list(types))

    def converted(pu: np.ndarray, do: np.ndarray, distance: np.ndarray) -> np.ndarray:
        dicts = [
            scheme.ride_features(p, d, x)
            for p, d, x in zip(pu.tolist(), do.tolist(), distance.tolist(), strict=True)
        ]
        return np.asarray(copy.predict(dicts), dtype="float64")

    proof = prove("skops", converted, probe)
    if not proof.holds:
        raise DeployError(
            f"the skops copy of {source} predicts differently (max |diff| {proof.max_diff:g} "
            f"on {proof.rides:,} probe rides): nothing written"
        )
    metadata = {
        "converted_from": {
            "location": str(source),
            "format": loaded.manifest.get("format", "pickle"),
            "sha256": loaded.manifest.get("sha256"),
            "sklearn_version": loaded.manifest.get("sklearn_version"),
        },
        "conversion_check": {"probe_rides": proof.rides, "max_abs_diff": proof.max_diff},
    }
    manifest = save_model(pipeline, out, {**_kept(loaded.manifest), **metadata})
    return Conversion(manifest, proof, types)


def _kept(manifest: dict[str, Any]) -> dict[str, Any]:
    """Return the descriptive fields of the old manifest (integrity fields are rewritten)."""
    dropped = {"sha256", "size_bytes", "model_file", "format", "version", "created_at"}
    return {key: value for key, value in manifest.items() if key not in dropped}
