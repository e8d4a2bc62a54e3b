"""Errors every mode turns into a clear message instead of a traceback."""

__all__ = ["DataError", "DeployError", "ModelLoadError", "RideValidationError", "UsageError"]


class DeployError(Exception):
    """Base class for user-facing errors: the message alone says what went wrong."""


class UsageError(DeployError):
    """Options that cannot go together, or an existing target they cannot use: exit code 2."""


class ModelLoadError(DeployError):
    """A model artifact is missing, tampered, truncated, not a model or from another sklearn."""


class DataError(DeployError):
    """A trip data file is missing, unreadable or lacks required columns."""


class RideValidationError(DeployError):
    """One ride failed validation; ``field`` names the offending field (or None)."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, str | None]:
        """Return the JSON error body every protocol uses."""
        return {"error": self.message, "field": self.field}
