"""`gengate`: serve the gateway, manage keys and the database, run and inspect tasks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from gengate.settings import Settings, load_settings

if TYPE_CHECKING:
    from gengate.domain.catalogue import Catalogue
    from gengate.services.keys import KeyService

T = TypeVar("T")

config_option = click.option(
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Config file (default: $GENGATE_CONFIG, else ./gengate.toml when present).",
)


def _settings(config: Path | None, **overrides: Any) -> Settings:
    try:
        return load_settings(config, **overrides)
    except (FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


@click.group()
@click.version_option(package_name="gengate")
def cli() -> None:
    """gengate: a self-hosted gateway for asynchronous AI generation tasks."""


@cli.command()
@config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, default=None, help="Port (default 8000).")
@click.option("--workers", type=int, default=None, help="In-process worker slots; 0 serves the API only.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None)
def serve(
    config: Path | None, host: str | None, port: int | None, workers: int | None, data_dir: Path | None
) -> None:
    """Run the gateway: API, in-process workers and result files."""
    import uvicorn

    from gengate.providers.registry import ConfigError
    from gengate.runtime import Gateway

    settings = _settings(config, host=host, port=port, workers=workers, data_dir=data_dir)
    _configure_logging(settings.log_level)
    try:
        gateway = Gateway(settings)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"gengate listening on {settings.base_url}  (data in {settings.data_dir.resolve()})", err=True)
    if gateway.admin_key_is_new:
        click.echo(
            f"admin key (made now, kept in {settings.data_dir / 'admin_key'}): {gateway.admin_key}", err=True
        )
    elif settings.admin_key is None:
        click.echo(f"admin key: {gateway.admin_key}", err=True)
    config_ = uvicorn.Config(
        gateway.asgi(),
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=15,
    )
    uvicorn.Server(config_).run()


@cli.command()
@config_option
def migrate(config: Path | None) -> None:
    """Create or upgrade the database schema."""
    from gengate.store.migrate import migrate_sqlite

    settings = _settings(config)
    count = migrate_sqlite(settings.sqlite_path)
    click.echo(f"applied {count} migration(s) to {settings.sqlite_path}")


@cli.group()
def keys() -> None:
    """Manage API keys (directly in the database; the server may be running)."""


@keys.command("create")
@config_option
@click.option("--name", required=True, help="What the key is for.")
@click.option("--models", default=None, help="Comma-separated model ids the key may use (default: all).")
@click.option(
    "--expires", type=click.DateTime(), default=None, help="Expiry (UTC), e.g. 2027-01-31T00:00:00."
)
def keys_create(config: Path | None, name: str, models: str | None, expires: datetime | None) -> None:
    """Create a key and print it (it is shown this once)."""
    model_ids = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    expires_at = int(expires.replace(tzinfo=UTC).timestamp() * 1000) if expires else None

    async def create() -> tuple[dict[str, Any], str]:
        settings = _settings(config)
        unknown = [m for m in model_ids or () if m not in _catalogue(settings)]
        if unknown:
            raise click.ClickException(f"unknown model ids: {', '.join(unknown)}")
        async with _key_service(settings) as service:
            key, secret = await service.create(name, models=model_ids, expires_at=expires_at)
        return key.public(), secret

    public, secret = _run(create)
    click.echo(f"created {public['id']} ({public['name']}); the key is shown once:", err=True)
    click.echo(secret)


@keys.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def keys_list(config: Path | None, as_json: bool) -> None:
    """List keys (never their secrets)."""

    async def listing() -> list[dict[str, Any]]:
        async with _key_service(_settings(config)) as service:
            return [key.public() for key in await service.list()]

    rows = _run(listing)
    if as_json:
        click.echo(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode())
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("id", "name", "prefix", "disabled", "expires", "models")
    for row in rows:
        expires = row["expires_at"]
        table.add_row(
            row["id"],
            row["name"],
            row["prefix"] + "…",
            "yes" if row["disabled"] else "no",
            datetime.fromtimestamp(expires / 1000, UTC).isoformat() if expires else "never",
            ",".join(row["models"]) if row["models"] is not None else "all",
        )
    Console().print(table)


@cli.command()
@config_option
def models(config: Path | None) -> None:
    """List the models this configuration offers."""
    for spec in _catalogue(_settings(config)):
        click.echo(f"{spec.id:24} modes={','.join(spec.modes)}  provider={spec.provider}  price={spec.price}")


@contextlib.asynccontextmanager
async def _key_service(settings: Settings) -> AsyncIterator[KeyService]:
    """Keys managed straight in the database, without the gateway's secrets or workers."""
    from gengate.services.keys import KeyService
    from gengate.store.sqlite import SQLiteStore

    store = SQLiteStore(settings.sqlite_path)
    await store.open()
    try:
        yield KeyService(store, admin_key=None)
    finally:
        await store.close()


def _catalogue(settings: Settings) -> Catalogue:
    from gengate.providers.registry import ConfigError, build_catalogue, build_providers

    try:
        return build_catalogue(settings, build_providers(settings))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # Migrations are announced once by us; yoyo's step-by-step lines are noise at start.
    logging.getLogger("yoyo").setLevel(max(logging.WARNING, logging.getLogger().level))


def _attach_client_commands() -> None:
    from gengate.cli.generate import generate_command, status_command

    cli.add_command(generate_command, "generate")
    cli.add_command(status_command, "status")


_attach_client_commands()


def main() -> None:
    cli()
