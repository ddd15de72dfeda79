"""One settings object, built at start from `gengate.toml` and `GENGATE_*` variables.

Precedence, strongest first: explicit overrides (command-line flags), environment,
the config file (`--config`, else `GENGATE_CONFIG`, else `./gengate.toml` when present),
defaults. Nothing here is read at import time; callers pass the object on.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from gengate.domain.callback_schedule import DEFAULT_RETRY_SCHEDULE
from gengate.settings_check import check_keys, explain, read_toml
from gengate.startup import ConfigFileError, StartupError, redacted_url

DEFAULT_CONFIG_FILE = "gengate.toml"


class ModelConfig(BaseModel):
    """A model as an operator declares it under `[models.<id>]`."""

    # A misspelt setting (`timout_s`) is an error, not a silent default.
    model_config = ConfigDict(extra="forbid")

    provider: str = Field(
        default="",
        description="One provider, e.g. `demo-image`: the short form of `providers`. Once loaded it "
        "holds the whole chain (`apixo:flux-2,kie:flux-2-pro`), the key of the model's provider.",
    )
    providers: list[str] = Field(
        default_factory=list,
        description="`<provider>` or `<provider>:<upstream model id>`, tried in order: a failure that is "
        "not the client's fault moves to the next.",
    )
    modes: list[str] | None = Field(default=None, description="Modes offered; default: all the provider has.")
    price: int = Field(default=1, ge=0, description="Credits per output.")
    timeout_s: float = Field(default=600.0, gt=0, description="Longest a run may take before TIMEOUT.")
    concurrency: int = Field(default=4, ge=1, description="Runs of this model at once in one worker.")
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts before a task fails: lost workers and transient errors count."
    )
    max_running: int | None = Field(
        default=None, ge=1, description="Running tasks of this model at once over the whole cluster."
    )
    retry_backoff_s: float = Field(
        default=2.0, ge=0, description="First wait after a transient failure; doubled each attempt."
    )
    max_queue: int | None = Field(
        default=None, ge=1, description="Pending tasks past which submits get 503; default: max_queue_depth."
    )
    options: dict[str, Any] = Field(default_factory=dict, description="Passed to the provider.")
    workflow: Path | None = Field(
        default=None,
        description="ComfyUI providers: the model's graph, exported in API format (a JSON file).",
    )
    bind: dict[str, str] = Field(
        default_factory=dict,
        description="ComfyUI providers: input field -> node input of the graph, `<node id>.inputs.<name>`.",
    )

    @model_validator(mode="after")
    def _provider_chain(self) -> ModelConfig:
        """`provider = "x"` is `providers = ["x"]`; afterwards `provider` names the whole chain."""
        if not self.providers:
            if not self.provider:
                raise ValueError("a model needs `providers` (or `provider`)")
            self.providers = [self.provider]
        elif self.provider not in ("", ",".join(self.providers)):
            raise ValueError("give `providers` or `provider`, not both")
        for ref in self.providers:
            if not _PROVIDER_REF.fullmatch(ref):
                raise ValueError(f"provider {ref!r}: write `<provider>` or `<provider>:<upstream model id>`")
        self.provider = ",".join(self.providers)
        return self


_PROVIDER_REF = re.compile(r"[A-Za-z0-9_.-]+(:[^,\s]+)?")

ProviderKind = Literal["apixo", "kie", "xhuo", "openai", "diffusers", "demo", "comfyui", "cog"]
#: A provider module of one's own, by its dotted import path (`mypackage.acme_relay`).
ProviderModule = Annotated[str, Field(pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")]


class ProviderConfig(BaseModel):
    """A backend under `[providers.<name>]`: an upstream service or a local pipeline.

    Options of its kind sit beside these fields (`poll_initial_s`, `path`, ...); the kind's
    builder checks them. The upstream's key is never written here: `api_key_env` names the
    environment variable that holds it.
    """

    model_config = ConfigDict(extra="allow")

    kind: ProviderKind | ProviderModule = Field(
        description="apixo, kie, xhuo, openai, diffusers, demo, comfyui, cog, or the dotted path of a relay "
        "module."
    )
    base_url: str | None = Field(default=None, description="The upstream's base URL (relays).")
    api_key_env: str | None = Field(
        default=None, description="Environment variable holding the upstream's API key (relays)."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Longest wait for one upstream HTTP answer.")
    breaker_failures: int = Field(
        default=5, ge=1, description="Failures in a row (not the client's fault) that open its circuit."
    )
    breaker_reset_s: float = Field(
        default=30.0, gt=0, description="Seconds an open circuit skips the provider before trying it again."
    )

    @model_validator(mode="after")
    def _no_inline_key(self) -> ProviderConfig:
        if "api_key" in (self.model_extra or {}):
            raise ValueError("put the key in an environment variable and name it in `api_key_env`")
        return self

    @property
    def options(self) -> dict[str, Any]:
        """The kind-specific options: every key beside the common fields."""
        return dict(self.model_extra or {})


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENGATE_", env_nested_delimiter="__", extra="ignore", toml_file=None
    )

    data_dir: Path = Field(default=Path(".gengate"), description="SQLite database, result files, secrets.")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    public_url: str | None = Field(
        default=None, description="Base of result URLs; default http://host:port (https with a certificate)."
    )
    ssl_certfile: Path | None = Field(
        default=None, description="TLS certificate chain (PEM): serve HTTPS; result URLs then use https."
    )
    ssl_keyfile: Path | None = Field(
        default=None, description="The certificate's private key (PEM), unless the certificate file holds it."
    )
    admin_key: SecretStr | None = Field(default=None, description="Admin key; made and kept if unset.")
    secret: SecretStr | None = Field(default=None, description="Signs result URLs; made and kept if unset.")
    database_url: str | None = Field(
        default=None,
        description="`sqlite:///path` or `postgresql://user@host/db`; default: SQLite in the data folder.",
    )
    database_pool_size: int = Field(default=10, ge=1, description="PostgreSQL connections per process.")
    database_wait_s: float = Field(
        default=30.0, ge=0, description="Longest a starting process waits for PostgreSQL to answer."
    )
    result_ttl: int = Field(default=86_400, gt=0, description="Seconds result URLs and files live.")
    files_url: str | None = Field(
        default=None,
        description="Where result files go: `s3://bucket/prefix` for S3; default: the data folder.",
    )
    s3_endpoint_url: str | None = Field(
        default=None, description="S3-compatible server (MinIO, Ceph, R2, ...); default: AWS."
    )
    s3_region: str = Field(default="us-east-1", description="Region S3 requests and URLs are signed for.")
    sync_wait: float = Field(default=60.0, gt=0, le=600, description="Longest wait of a `sync` submit.")
    replicate_owner: str = Field(
        default="gengate",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The owner in Replicate model names: model `demo-image` is `<owner>/demo-image`.",
    )
    workers: int = Field(default=32, ge=0, description="In-process worker slots; 0 runs no worker.")
    max_body_bytes: int = Field(default=1 << 20, gt=0, description="Largest request body accepted.")
    # -- connections, per API process ---------------------------------------------------------
    max_header_bytes: int = Field(
        default=65_536, ge=1024, description="Largest request head (request line and headers); 431 beyond."
    )
    header_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest a client may take to send a request's head, from connecting (or from the "
        "request's first byte on a kept-alive connection); then the connection is closed.",
    )
    keep_alive_s: float = Field(
        default=5.0, gt=0, description="An idle kept-alive connection is closed after this many seconds."
    )
    max_connections: int | None = Field(
        default=None,
        ge=1,
        description="Open connections per API process past which requests get 503 `unavailable`; default: "
        "the open-file limit (`ulimit -n`) less 512, or less a quarter when that is smaller.",
    )
    lease_s: float = Field(default=30.0, gt=0, description="A claim's lease, renewed while the task runs.")
    cleanup_interval_s: float = Field(default=300.0, gt=0, description="How often expired files are removed.")
    min_free_bytes: int = Field(
        default=64 << 20,
        ge=0,
        description="Free bytes the data and files folders need for `/readyz` to say ready; 0: not checked.",
    )
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
    webhook_host_concurrency: int = Field(
        default=0,
        ge=0,
        description="Most callback attempts in flight to one receiver host (0: half of webhook_concurrency); "
        "a host's window adapts below it.",
    )
    webhook_slow_s: float = Field(
        default=1.0, gt=0, description="A receiver answering slower than this gets fewer callbacks at once."
    )
    webhook_http2: bool = Field(
        default=False,
        description="Offer HTTP/2 to https callback receivers (ALPN): one connection a receiver, about "
        "three times the CPU a callback of a kept-alive HTTP/1.1 connection.",
    )
    demo_models: bool = Field(default=True, description="Offer the built-in demo models.")
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    providers: dict[str, ProviderConfig] = Field(
        default_factory=dict, description="Upstream services and local pipelines models can name."
    )
    # -- accounts and safety ----------------------------------------------------------------
    max_queue_depth: int = Field(
        default=10_000, ge=1, description="Pending tasks of one model past which submits get 503."
    )
    rate_limit: str | None = Field(
        default=None,
        description="Default per-key request rate, e.g. `60/minute`; a key's own `rate_limit` wins.",
    )
    rate_limit_storage: str = Field(
        default="memory://",
        description="Rate-limit windows: `memory://` (one process) or `redis://host:port` (shared).",
    )
    console_session_ttl_s: float = Field(
        default=12 * 3600, gt=0, description="How long a web console sign-in lasts (seconds)."
    )
    console_signin_limit: str = Field(
        default="10/minute", description="Failed console sign-ins allowed per client address."
    )
    moderation_deny_words: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Words refused in any input string: case-insensitive, whole words (comma-separated).",
    )
    moderation_deny_patterns: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Regular expressions refused in any input string, case-insensitive "
        "(one per line, or a JSON array).",
    )
    moderation_hook: str | None = Field(
        default=None,
        description="`package.module:factory` called with the settings, returning the Moderator "
        "to use instead of the deny-lists.",
    )
    log_level: str = Field(
        default="info",
        description="Lowest level logged (every library's too): debug, info, warning, error or critical.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="`text` (`time LEVEL logger: message key=value ...`) or `json` (one object per line).",
    )
    access_log: bool = Field(
        default=True,
        description="One line per HTTP request: method, route template, status, duration, key, "
        "trace and task ids.",
    )

    @field_validator("webhook_retry_schedule", "webhook_allow", "moderation_deny_words", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        if value and not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"use sqlite:///PATH or postgresql://user@host/db (got {redacted_url(value)})")
        return value or None

    @model_validator(mode="after")
    def _key_needs_certificate(self) -> Settings:
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            raise ValueError("ssl_keyfile is set without ssl_certfile: give the certificate too")
        return self

    @field_validator("files_url")
    @classmethod
    def _files_url(cls, value: str | None) -> str | None:
        if value and not value.startswith("s3://"):
            raise ValueError(
                f"unsupported files URL {value!r}: use s3://bucket/prefix, "
                "or leave it unset for the data folder"
            )
        return value or None

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        if value.lower() not in {"debug", "info", "warning", "error", "critical"}:
            raise ValueError(f"use debug, info, warning, error or critical (got {value!r})")
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule(cls, value: list[float]) -> list[float]:
        if not value or any(delay < 0 for delay in value):
            raise ValueError("needs at least one delay, none negative")
        return value

    @field_validator("moderation_deny_patterns", mode="before")
    @classmethod
    def _patterns(cls, value: Any) -> Any:
        # Commas are common inside regular expressions, so patterns are one per line.
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [line.strip() for line in text.splitlines() if line.strip()]
        return value

    @field_validator("moderation_deny_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern {pattern!r} does not compile: {exc}") from exc
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate_limit(cls, value: str | None) -> str | None:
        if value:
            from gengate.services.ratelimit import parse_rate_limit  # noqa: PLC0415 - when one is set

            parse_rate_limit(value)
        return value or None

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
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def scheme(self) -> str:
        """`https` when served with a certificate."""
        return "https" if self.ssl_certfile is not None else "http"

    @property
    def sqlite_path(self) -> Path:
        url = self.database_url
        if url and url.startswith("sqlite:///"):
            return Path(url.removeprefix("sqlite:///"))
        if url and not url.startswith(("postgresql://", "postgres://")):
            raise StartupError(
                f"unsupported database URL {redacted_url(url)}: use sqlite:///PATH or postgresql://..."
            )
        return self.data_dir / "gengate.db"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"


def load_settings(config: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings; `overrides` (flags) win over the environment and the file.

    A mistake raises :class:`ConfigFileError` naming the file or variable, the table and the
    setting: unknown keys (with the nearest known one), TOML syntax, values of the wrong type.
    """
    path = _config_path(config)
    if path is not None:
        check_keys(path, read_toml(path), Settings)

    class _FromFile(Settings):
        model_config = SettingsConfigDict(toml_file=path)

    values = {name: value for name, value in overrides.items() if value is not None}
    try:
        return _FromFile(**values)
    except ValidationError as exc:
        raise explain(exc, Settings, path, values) from None
    except SettingsError as exc:  # a variable that should hold JSON does not
        raise ConfigFileError(_unparsable(str(exc))) from None


def _unparsable(message: str) -> str:
    field = re.search(r'field "(\w+)"', message)
    if field is None:
        return message
    return f"GENGATE_{field.group(1).upper()}: not valid JSON"


def _config_path(config: str | Path | None, variable: str = "") -> Path | None:
    if config is not None:
        path = Path(config)
        if not path.is_file():
            by = f"{variable} names " if variable else ""
            raise ConfigFileError(f"{by}config file {path} does not exist")
        return path
    named = os.environ.get("GENGATE_CONFIG")
    if named:
        return _config_path(named, "GENGATE_CONFIG")
    default = Path(DEFAULT_CONFIG_FILE)
    return default if default.is_file() else None
