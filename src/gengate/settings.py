"""One settings object, built at start from `gengate.toml` and `GENGATE_*` variables.

Precedence, strongest first: explicit overrides (command-line flags), environment,
the config file (`--config`, else `GENGATE_CONFIG`, else `./gengate.toml` when present),
defaults. Nothing here is read at import time; callers pass the object on.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = "gengate.toml"

#: At once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about a day and a half in all.
DEFAULT_RETRY_SCHEDULE = (0, 5, 300, 1800, 7200, 18000, 36000, 36000)


class ModelConfig(BaseModel):
    """A model as an operator declares it under `[models.<id>]`."""

    provider: str = Field(description="Provider that runs the model, e.g. `demo-image`.")
    modes: list[str] | None = Field(default=None, description="Modes offered; default: all the provider has.")
    price: int = Field(default=1, ge=0, description="Credits per output.")
    timeout_s: float = Field(default=600.0, gt=0, description="Longest a run may take before TIMEOUT.")
    concurrency: int = Field(default=4, ge=1, description="Runs of this model at once in one worker.")
    max_attempts: int = Field(default=3, ge=1, description="Claims before a task whose worker died fails.")
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the provider.")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENGATE_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    data_dir: Path = Field(default=Path(".gengate"), description="SQLite database, result files, secrets.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = Field(default=None, description="Base of result URLs; default http://host:port.")
    admin_key: SecretStr | None = Field(default=None, description="Admin key; made and kept if unset.")
    secret: SecretStr | None = Field(default=None, description="Signs result URLs; made and kept if unset.")
    database_url: str | None = Field(default=None, description="Default: SQLite in the data folder.")
    result_ttl: int = Field(default=86_400, gt=0, description="Seconds result URLs and files live.")
    sync_wait: float = Field(default=60.0, gt=0, le=600, description="Longest wait of a `sync` submit.")
    workers: int = Field(default=32, ge=0, description="In-process worker slots; 0 runs no worker.")
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="Largest request body accepted.")
    lease_s: float = Field(default=30.0, gt=0, description="A claim's lease, renewed while the task runs.")
    cleanup_interval_s: float = Field(default=300.0, gt=0, description="How often expired files are removed.")
    webhook_retry_schedule: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [float(delay) for delay in DEFAULT_RETRY_SCHEDULE],
        description="Seconds before each callback attempt: the first, then each retry (comma-separated).",
    )
    webhook_allow: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="CIDRs callbacks may reach although private or loopback (comma-separated).",
    )
    webhook_timeout_s: float = Field(default=10.0, gt=0, le=120, description="Per callback attempt.")
    webhook_concurrency: int = Field(default=64, ge=1, description="Callback attempts in flight at once.")
    demo_models: bool = Field(default=True, description="Offer the built-in demo models.")
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    log_level: str = "info"

    @field_validator("webhook_retry_schedule", "webhook_allow", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("needs at least one delay, none negative")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def sqlite_path(self) -> Path:
        url = self.database_url
        if url and url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        if url:
            raise ValueError(f"unsupported database URL {url!r}: this build stores tasks in SQLite")
        return self.data_dir / "gengate.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; `overrides` (flags) win over the environment and the file."""
    path = _config_path(config)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    values = {name: value for name, value in overrides.items() if value is not None}
    return _FromFile(**values)


def _config_path(config: str | Path | None) -> Path | None:
    if config is not None:
        path = Path(config)
        if not path.is_file():
            raise FileNotFoundError(f"config file {path} does not exist")
        return path
    named = os.environ.get("GENGATE_CONFIG")
    if named:
        return _config_path(named)
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None
