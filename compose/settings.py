"""Compose settings (env prefix ``DEPLOY_COMPOSE_``)."""

from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ComposeSettings"]


class ComposeSettings(BaseSettings):
    """How the compose runtime builds its stacks."""

    model_config = SettingsConfigDict(env_prefix="DEPLOY_COMPOSE_", extra="ignore")

    bake: bool = False
    """Build the model into the mode images instead of mounting it read-only."""
