"""`gengate generate` and `gengate status`: the SDK's `Client` behind a terminal front end.

Exit codes: 0 done, 1 the task failed, 2 the API refused or could not be reached, 3 the wait timed out.
Tests (or embedders) inject an `httpx.BaseTransport` as the click context object (`obj=`); the
commands find it with `ctx.find_object`, so tests need no monkeypatching.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar

import click
import httpx
import stamina.instrumentation
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from gengate.client import APIError, Client, GengateError, TaskStatus, TaskTimeoutError

DEFAULT_URL = "http://127.0.0.1:8000"
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_RESERVED_PARAMS = frozenset({"prompt", "mode"})

F = TypeVar("F", bound=Callable[..., Any])


def _connection_options(func: F) -> F:
    """`--url` and `--key`, shared by both commands and read from the environment by default."""
    func = click.option(
        "--key",
        envvar="GENGATE_API_KEY",
        show_envvar=True,
        help="API key (Bearer token).",
    )(func)
    return click.option(
        "--url",
        envvar="GENGATE_URL",
        default=DEFAULT_URL,
        show_default=True,
        show_envvar=True,
        help="Base URL of the gateway.",
    )(func)


def _fail(message: str, code: int) -> NoReturn:
    click.echo(message, err=True)
    raise click.exceptions.Exit(code)


def _say_retry(details: stamina.instrumentation.RetryDetails) -> None:
    click.echo(f"retrying in {details.wait_for:.1f} s: {details.caused_by}", err=True)


@contextmanager
def _retry_notices() -> Iterator[None]:
    """One readable line per retry instead of stamina's default log records, for this command only."""
    previous = stamina.instrumentation.get_on_retry_hooks()
    stamina.instrumentation.set_on_retry_hooks([_say_retry])
    try:
        yield
    finally:
        stamina.instrumentation.set_on_retry_hooks(previous)


@contextmanager
def _client(url: str, key: str | None) -> Iterator[Client]:
    """A client on the injected transport, if any, turning SDK errors into messages and exit codes."""
    if not key:
        raise click.UsageError("no API key: pass --key or set GENGATE_API_KEY")
    transport = click.get_current_context().find_object(httpx.BaseTransport)
    try:
        with _retry_notices(), Client(url, key, transport=transport) as client:
            yield client
    except APIError as exc:
        _fail(str(exc), 2)
    except TaskTimeoutError as exc:
        _fail(str(exc), 3)
    except GengateError as exc:
        _fail(f"error: {exc}", 2)
    except httpx.TransportError as exc:
        _fail(f"cannot reach {url}: {exc}", 2)


def parse_param(raw: str) -> tuple[str, Any]:
    """`key=value`, the value as JSON when it is JSON (`256`, `true`, `[1,2]`), else as a string."""
    key, sep, value = raw.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected KEY=VALUE, got {raw!r}", param_hint="--param")
    if key in _RESERVED_PARAMS:
        raise click.BadParameter(f"use --{key} instead of --param {key}=...", param_hint="--param")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def result_filename(task_id: str, index: int, url: str) -> str:
    """`<task id>_<index><ext>`, the extension taken from the URL path when it looks like one."""
    suffix = PurePosixPath(httpx.URL(url).path).suffix
    return f"{task_id}_{index}{suffix.lower() if _SUFFIX.fullmatch(suffix) else ''}"


def _progress_view(console: Console) -> Progress:
    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    )


@click.command("generate")
@click.argument("model")
@click.option("--prompt", required=True, help="What to generate.")
@click.option("--mode", default=None, help="Model mode, e.g. text-to-image.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE", help="Extra input field (repeatable).")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="Folder for the results.",
)
@click.option(
    "--timeout", type=click.FloatRange(min=0), default=300.0, show_default=True, help="Seconds to wait."
)
@_connection_options
def generate_command(
    *,
    model: str,
    prompt: str,
    mode: str | None,
    params: tuple[str, ...],
    out: Path,
    timeout: float,
    url: str,
    key: str | None,
) -> None:
    """Generate with MODEL, show progress, and save the results into --out."""
    task_input: dict[str, Any] = {"prompt": prompt, **dict(parse_param(p) for p in params)}
    if mode is not None:
        task_input = {"mode": mode, **task_input}
    console = Console(stderr=True)
    with _client(url, key) as client:
        task_id = client.submit(model, task_input)
        with _progress_view(console) as progress:
            bar = progress.add_task(f"{task_id} submitted", total=100)

            def show(status: TaskStatus) -> None:
                done = 100 if status.succeeded else status.progress or 0
                progress.update(bar, description=f"{task_id} {status.state}", completed=done)

            status = client.wait(model, task_id, timeout=timeout, on_update=show)
        if not status.succeeded:
            _fail(f"{status.fail_code}: {status.fail_msg}", 1)
        out.mkdir(parents=True, exist_ok=True)
        for index, result_url in enumerate(status.result_urls):
            saved = client.download(result_url, out / result_filename(task_id, index, result_url))
            click.echo(str(saved))


def _when(ms: int | None) -> str:
    return "-" if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="seconds")


def format_status(status: TaskStatus) -> str:
    """A few aligned lines for humans; only the fields the state carries."""
    rows: list[tuple[str, str]] = [("task", status.task_id), ("state", status.state)]
    if status.progress is not None and not status.is_terminal:
        rows.append(("progress", f"{status.progress}%"))
    rows.append(("created", _when(status.create_time)))
    if status.complete_time is not None:
        rows.append(("completed", _when(status.complete_time)))
    if status.cost_time is not None:
        rows.append(("cost", f"{status.cost_time / 1000:.1f} s"))
    if status.fail_code is not None or status.fail_msg is not None:
        rows.append(("failure", f"{status.fail_code}: {status.fail_msg}"))
    rows.extend(("result", result) for result in status.result_urls)
    return "\n".join(f"{name:<10} {value}" for name, value in rows)


@click.command("status")
@click.argument("model")
@click.argument("task_id")
@click.option("--json", "as_json", is_flag=True, help="Print the status `data` object as JSON.")
@_connection_options
def status_command(*, model: str, task_id: str, as_json: bool, url: str, key: str | None) -> None:
    """Show the current status of TASK_ID, submitted to MODEL."""
    with _client(url, key) as client:
        status = client.status(model, task_id)
    click.echo(json.dumps(status.raw, indent=2) if as_json else format_status(status))
