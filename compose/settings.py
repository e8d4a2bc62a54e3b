"""Compose settings (env prefix ``DEPLOY_COMPOSE_``)."""

import re

from pydantic import field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["DEFAULT_PROJECT_PREFIX", "MAX_REPLICAS", "ComposeSettings", "check_project_prefix"]

DEFAULT_PROJECT_PREFIX = "deploy"
# Most web replicas `deploy web --runtime compose --replicas N` starts.
MAX_REPLICAS = 16
# What both compose versions accept as a project name (v2 refuses anything else).
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


class ComposeSettings(BaseSettings):
    """How the compose runtime builds and names its stacks."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_COMPOSE_", extra="ignore")

    bake: bool = False
    """Build the model into the mode images instead of mounting it read-only."""

    project_prefix: str = DEFAULT_PROJECT_PREFIX
    """Start of every stack's compose project name, ``<prefix>-<mode>`` (``deploy-web``): another
    prefix keeps a second checkout's stacks, or a test's, apart from these."""

    @field_validator("project_prefix")
    @classmethod
    def _a_project_name(cls, value: str) -> str:
        return check_project_prefix(value)


def check_project_prefix(value: str) -> str:
    """Return ``value`` if it can start a compose project name, else raise ValueError."""
    if not _PROJECT_NAME.fullmatch(value):
        raise ValueError(
            "a compose project name takes lowercase letters, digits, dashes and "
            "underscores, and starts with a letter or digit"
        )
    return value
