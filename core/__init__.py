"""The shared model package: features, validation, training, the artifact and scoring.

Pure logic only: nothing here imports flask, typer or docker. Storage (local paths and
``s3://``) sits behind :mod:`deploy_modes.core.storage`, the only module that builds AWS
clients.
"""

from deploy_modes.core.errors import DeployError, ModelLoadError, RideValidationError
from deploy_modes.core.naming import MODEL_NAME

__all__ = ["MODEL_NAME", "DeployError", "ModelLoadError", "RideValidationError"]
