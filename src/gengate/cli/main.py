"""`gengate`: serve the gateway, manage keys and the database, run and inspect tasks."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click
import orjson

from gengate.settings import Settings, load_settings
from gengate.startup import StartupError

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
    except (StartupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


def _run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


def _run_gateway_call(make: Callable[[], Awaitable[T]]) -> T:
    """`_run`, with the gateway's refusals (no such key, a bad value) as command errors."""
    from gengate.domain.errors import GatewayError

    try:
        return _run(make)
    except GatewayError as exc:
        raise click.ClickException(exc.message) from exc


@click.group()
@click.version_option(package_name="gengate")
def cli() -> None:
    """gengate: a self-hosted gateway for asynchronous AI generation tasks."""


@cli.command()
@config_option
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1, or $GENGATE_HOST).")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Port to listen on (default 8000, or $GENGATE_PORT); 0 takes a free one.",
)
@click.option(
    "--workers",
    type=click.IntRange(0),
    default=None,
    help="In-process worker slots per process (default 32, or $GENGATE_WORKERS); 0 serves the API only.",
)
@click.option(
    "--processes",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="API processes sharing the port; the database and the data folder are shared.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder of the SQLite database, result files and secrets (default .gengate, or $GENGATE_DATA_DIR).",
)
@click.option(
    "--ssl-certfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Serve HTTPS with this certificate chain, PEM (or $GENGATE_SSL_CERTFILE); result URLs use https.",
)
@click.option(
    "--ssl-keyfile",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The certificate's private key, PEM (or $GENGATE_SSL_KEYFILE).",
)
def serve(  # noqa: PLR0917 - click passes every option positionally by name
    config: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    processes: int,
    data_dir: Path | None,
    ssl_certfile: Path | None,
    ssl_keyfile: Path | None,
) -> None:
    """Run the gateway: API, in-process workers and result files.

    Connection limits (request head size and time, idle keep-alive, connections per process)
    are settings: see GENGATE_MAX_HEADER_BYTES, GENGATE_HEADER_TIMEOUT_S, GENGATE_KEEP_ALIVE_S
    and GENGATE_MAX_CONNECTIONS in the README.
    """
    from gengate import bootstrap, logsafe
    from gengate.observability import tracing
    from gengate.providers.registry import ConfigError
    from gengate.runtime import Gateway
    from gengate.server.listen import ListenError, address_of, listen
    from gengate.server.run import run_in_process, run_processes
    from gengate.server.tls import check_tls

    settings = _settings(
        config,
        host=host,
        port=port,
        workers=workers,
        data_dir=data_dir,
        ssl_certfile=ssl_certfile,
        ssl_keyfile=ssl_keyfile,
    )
    check_tls(settings)  # a bad certificate is one line, before anything starts
    _configure_logging(settings)
    tracing.setup("serve")  # only with OTEL_EXPORTER_OTLP_ENDPOINT & co; see the README
    try:  # before anything starts: a port in use is one line, not a traceback after a banner
        sock = listen(settings.host, settings.port)
    except ListenError as exc:
        raise click.ClickException(str(exc)) from exc
    bound_host, bound_port = address_of(sock)
    settings = settings.model_copy(update={"port": bound_port})  # port 0: the one taken
    if processes == 1:
        try:
            gateway = Gateway(settings)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        admin_key, is_new = gateway.admin_key, gateway.admin_key_is_new
    else:
        _settings_to_environment(config, host, bound_port, workers, data_dir, ssl_certfile, ssl_keyfile)
        try:
            Gateway(settings)  # checks the configuration before any process starts
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from exc
        # Made once here, so the processes do not race to create them.
        admin_key, is_new = bootstrap.admin_key(settings)
        bootstrap.server_secret(settings)
    _banner(settings, processes, bound_host)
    logsafe.add_secret(admin_key)
    if is_new:  # shown this once; later starts name only where it is kept
        click.echo(f"admin key (made now, kept in {settings.data_dir / 'admin_key'}): {admin_key}", err=True)
    elif settings.admin_key is None:
        click.echo(f"admin key: kept in {settings.data_dir / 'admin_key'}", err=True)
    if processes == 1:
        run_in_process(gateway.asgi(server_process=True), settings, sock)
    else:
        run_processes("gengate.runtime:asgi_from_environment", settings, sock, processes)


def _banner(settings: Settings, processes: int, bound_host: str) -> None:
    """Where it listens (the bound address), and where the API docs and the console are."""
    host = f"[{bound_host}]" if ":" in bound_host else bound_host
    where = f"{processes} processes" if processes > 1 else "1 process"
    data = settings.data_dir.resolve()
    click.echo(
        f"gengate listening on {settings.scheme}://{host}:{settings.port}  ({where}, data in {data})",
        err=True,
    )
    click.echo(f"  API docs: {settings.base_url}/docs   console: {settings.base_url}/console", err=True)


def _settings_to_environment(  # noqa: PLR0917 - one parameter per flag
    config: Path | None,
    host: str | None,
    port: int | None,
    workers: int | None,
    data_dir: Path | None,
    ssl_certfile: Path | None = None,
    ssl_keyfile: Path | None = None,
) -> None:
    """Flags reach the API processes through the environment, where their settings look."""
    import os

    flags = {
        "CONFIG": config,
        "HOST": host,
        "PORT": port,
        "WORKERS": workers,
        "DATA_DIR": data_dir,
        "SSL_CERTFILE": ssl_certfile,
        "SSL_KEYFILE": ssl_keyfile,
    }
    for name, value in flags.items():
        if value is not None:
            os.environ[f"GENGATE_{name}"] = str(value.resolve() if isinstance(value, Path) else value)


@cli.command()
@config_option
@click.option("--models", default="", help="Comma-separated model ids to run (default: every model).")
@click.option("--concurrency", type=int, default=None, help="Tasks run at once (default: GENGATE_WORKERS).")
@click.option("--grace", type=float, default=30.0, show_default=True, help="Seconds to finish on SIGTERM.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve this worker's Prometheus metrics on this port (0: a free one, logged).",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True, help="Address of --metrics-port.")
def worker(  # noqa: PLR0917 - one parameter per flag
    config: Path | None,
    models: str,
    concurrency: int | None,
    grace: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Run tasks only: a worker beside API processes that share the database and files."""
    from gengate.observability import tracing
    from gengate.providers.registry import ConfigError
    from gengate.worker.standalone import UnknownModelsError, run_worker

    settings = _settings(config)
    _configure_logging(settings)
    tracing.setup("worker")
    wanted = [model.strip() for model in models.split(",") if model.strip()]
    try:
        slots = concurrency or settings.workers or 1
        _run(lambda: run_worker(settings, wanted, slots, grace, metrics_port, metrics_host))
    except (ConfigError, UnknownModelsError) as exc:
        raise click.ClickException(str(exc)) from exc


@cli.command()
@config_option
def migrate(config: Path | None) -> None:
    """Create or upgrade the database schema (SQLite or PostgreSQL, from GENGATE_DATABASE_URL)."""
    from gengate.store.factory import is_postgres_url

    settings = _settings(config)
    target = settings.database_url or f"sqlite:///{settings.sqlite_path}"
    if is_postgres_url(target):
        from gengate.store.postgres.edge import wait_for_postgres

        count = wait_for_postgres(target, settings.database_wait_s)
    else:
        from gengate.store.sqlite.opening import prepare_sqlite

        count = prepare_sqlite(settings.sqlite_path)
    click.echo(f"applied {count} migration(s) to {_redacted(target)}")


def _redacted(url: str) -> str:
    """A database URL fit for a log line: any password replaced."""
    from gengate.startup import redacted_url

    return redacted_url(url)


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
@click.option(
    "--credits", "credits_", type=click.IntRange(0), default=None, help="Balance (default: unlimited)."
)
@click.option("--rate-limit", default=None, help="Requests per moving window, e.g. 60/minute.")
@click.option("--max-concurrent", type=click.IntRange(1), default=None, help="Unfinished tasks at once.")
def keys_create(
    *,
    config: Path | None,
    name: str,
    models: str | None,
    expires: datetime | None,
    credits_: int | None,
    rate_limit: str | None,
    max_concurrent: int | None,
) -> None:
    """Create a key and print it (it is shown this once)."""
    model_ids = [m.strip() for m in models.split(",") if m.strip()] if models is not None else None
    expires_at = int(expires.replace(tzinfo=UTC).timestamp() * 1000) if expires else None

    async def create() -> tuple[dict[str, Any], str]:
        settings = _settings(config)
        unknown = [m for m in model_ids or () if m not in _catalogue(settings)]
        if unknown:
            raise click.ClickException(f"unknown model ids: {', '.join(unknown)}")
        async with _key_service(settings) as service:
            key, secret = await service.create(
                name,
                models=model_ids,
                expires_at=expires_at,
                credits=credits_,
                rate_limit=rate_limit,
                max_concurrent=max_concurrent,
            )
        return key.public(), secret

    public, secret = _run_gateway_call(create)
    click.echo(f"created {public['id']} ({public['name']}); the key is shown once:", err=True)
    click.echo(secret)


@keys.command("topup")
@config_option
@click.argument("key_id")
@click.argument("amount", type=int)
def keys_topup(config: Path | None, key_id: str, amount: int) -> None:
    """Add AMOUNT credits to a key's balance (negative takes away), recorded on its ledger."""

    async def topup() -> int | None:
        async with _key_service(_settings(config)) as service:
            return (await service.add_credits(key_id, amount)).credits

    balance = _run_gateway_call(topup)
    click.echo(f"{key_id}: balance {balance}")


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
    from gengate.cli.key_listing import print_keys

    print_keys(rows)


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
    from gengate.store.factory import build_store
    from gengate.store.notify import ChangeHub

    store = build_store(settings, ChangeHub())
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


def _configure_logging(settings: Settings) -> None:
    """Every line of the process, the libraries' too, in GENGATE_LOG_FORMAT from GENGATE_LOG_LEVEL up."""
    from gengate.observability import logs

    logs.configure(settings.log_level, settings.log_format)


def _attach_client_commands() -> None:
    from gengate.cli.generate import generate_command, status_command

    cli.add_command(generate_command, "generate")
    cli.add_command(status_command, "status")


_attach_client_commands()


def main() -> None:
    """The command line; a data folder, database or configuration that cannot be used ends any
    command with its one or two lines (no traceback), from wherever it was found."""
    try:
        cli()
    except StartupError as exc:
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
