"""Every log line of the process in one format, `text` or `json` (GENGATE_LOG_FORMAT).

gengate's own lines and those of the libraries it uses (uvicorn, httpx, asyncpg, ...) are
stdlib records; one root handler renders them with structlog's `ProcessorFormatter`. The
per-request access line is a structlog event on its fast path (a level-filtering bound
logger, orjson, a bytes logger writing to the same stream). Both go through the same
processors: the context's trace and task ids, level, logger name, UTC timestamp, secrets
scrubbed (:mod:`gengate.logsafe`), then the renderer:

- text: `2026-11-30T14:02:00.123Z INFO gengate.access: request method=GET route=... status=200`
- json: one object per line, `{"event": ..., "level": "info", "logger": ..., "timestamp": ...}`
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, BinaryIO, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from gengate import logsafe
from gengate.observability.context import add_request_notes, add_task_fields

FORMATS = ("text", "json")
#: Fields written by gengate itself from bounded values: not scanned for secrets.
_SAFE = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "trace_id",
        "task_id",
        "key_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "attempt",
        "model",
        "provider",
    }
)
_SAFE_FOREIGN = _SAFE | {"event"}
#: Texts up to this long have their scrubbed form remembered (messages repeat; tracebacks do not).
_CACHED_UP_TO = 160
#: Keys of the text form written before the `key=value` pairs.
_HEAD = ("timestamp", "level", "logger", "event", "exception")


def redact_event(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    """structlog processor: every text value but gengate's bounded fields, scrubbed of secrets
    (the message, a traceback, a URL); from INFO up without any URL's query."""
    level = logging.getLevelName(str(event.get("level", "debug")).upper())
    if not isinstance(level, int):
        level = logging.DEBUG
    # A stdlib record's message was scrubbed as it was made (:class:`gengate.logsafe.RedactedRecord`).
    skip = _SAFE_FOREIGN if event.get("_from_structlog") is False else _SAFE
    for key, value in event.items():
        if isinstance(value, str) and key not in skip:
            short = len(value) <= _CACHED_UP_TO
            event[key] = logsafe.redact_cached(value, level) if short else logsafe.redact(value, level)
    return event


_LEVELS = {name: name.upper() for name in ("debug", "info", "warning", "error", "critical", "exception")}


def _logfmt_value(value: Any) -> str:
    """A value as logfmt writes it: bare, or JSON-quoted when it holds a space, `=`, a quote
    or a control character (so that a line stays one line and splits unambiguously)."""
    text = (
        value
        if isinstance(value, str)
        else "true"
        if value is True
        else "false"
        if value is False
        else str(value)
    )
    if not text or " " in text or "=" in text or '"' in text or not text.isprintable():
        return orjson.dumps(text).decode()
    return text


def render_text(_logger: WrappedLogger, _name: str, event: EventDict) -> str:
    """`timestamp LEVEL logger: message key=value ...` (logfmt pairs), a traceback on the lines
    after. Runs for every access line: one pass, no regular expression."""
    level = event.get("level", "")
    parts = [
        f"{event.get('timestamp', '')} {_LEVELS.get(level) or str(level).upper()} "
        f"{event.get('logger', '-')}: {event.get('event', '')}"
    ]
    for key, value in event.items():
        if value is not None and key not in _HEAD:
            parts.append(f"{key}={_logfmt_value(value)}")
    line = " ".join(parts)
    exception = event.get("exception")
    return f"{line}\n{exception}" if exception else line


def render_access_text(_logger: WrappedLogger, _name: str, event: EventDict) -> bytes:
    """The access line in the text format, as :func:`render_text` writes it, without its
    general cases: every field is a bounded value of ours that needs no quoting (a method of
    a fixed set, a route template, numbers, ids; a caller's trace id is admitted only as
    letters, digits and `-_.:`)."""
    line = (
        f"{event['timestamp']} INFO gengate.access: {event['event']} method={event['method']}"
        f" route={event['route']} status={event['status']} duration_ms={event['duration_ms']}"
    )
    for key in ("key_id", "trace_id", "task_id"):
        value = event.get(key)
        if value is not None:
            line += f" {key}={value}"
    return line.encode()


def _json_bytes(event: MutableMapping[str, Any], **_kw: Any) -> bytes:
    return orjson.dumps(event, default=str)


def _json_text(event: MutableMapping[str, Any], **_kw: Any) -> str:
    return orjson.dumps(event, default=str).decode()


def _scrubbed(render: Processor) -> Processor:
    """The stdlib path's renderer: its line is marked scrubbed (every field was, just before),
    so the record does not scrub the whole rendered line once more."""

    def mark(logger: WrappedLogger, name: str, event: EventDict) -> str:
        return logsafe.Scrubbed(render(logger, name, event))

    return mark


def _encoded(render: Callable[[WrappedLogger, str, EventDict], str]) -> Processor:
    def encode(logger: WrappedLogger, name: str, event: EventDict) -> bytes:
        return render(logger, name, event).encode("utf-8", "replace")

    return encode


def _chain(stdlib: bool) -> list[Processor]:
    """What every line gets before it is rendered: its context, level and time (a structlog
    event names its logger itself; a stdlib record by its logger's name)."""
    head: list[Processor] = [add_task_fields, add_request_notes]
    named: list[Processor] = [structlog.stdlib.add_logger_name] if stdlib else []
    return [*head, *named, structlog.processors.add_log_level, _timestamper]


class _UtcTimestamper:
    """structlog processor: `timestamp` in ISO 8601, UTC, microseconds (`...T14:02:00.123456Z`).
    The date and time of day are formatted once a second; each line adds only its fraction."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, _logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        event["timestamp"] = f"{self._prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event


_timestamper = _UtcTimestamper()


def configure(level: str = "info", fmt: str = "text", stream: TextIO | None = None) -> None:
    """Route every log record of the process to `stream` (stderr) in `fmt`, from `level` up.

    Called once per process (`gengate serve`, each API process, `gengate worker`); a later
    call replaces the handler, so tests may call it again. Loggers bound before keep the
    configuration they were bound with (the request log binds its own when the app is built).
    """
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    out = stream if stream is not None else sys.stderr
    logsafe.install()

    text_renderer: Processor = (
        render_text if fmt == "text" else structlog.processors.JSONRenderer(serializer=_json_text)
    )
    bytes_renderer: Processor = (
        _encoded(render_text) if fmt == "text" else structlog.processors.JSONRenderer(serializer=_json_bytes)
    )
    tail: list[Processor] = [structlog.processors.format_exc_info, redact_event]

    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_chain(stdlib=True),
        processors=[
            *tail,
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            _scrubbed(text_renderer),
        ],
    )
    binary = getattr(out, "buffer", None)
    handler: logging.Handler = (
        BufferedLineHandler(DelayFlushed(binary)) if binary is not None else logging.StreamHandler(out)
    )
    handler.setFormatter(formatter)
    handler.set_name("gengate")
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "gengate"]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    # Libraries that configure their own handlers (uvicorn) log through the root's instead;
    # uvicorn's access log not at all: gengate's own request line replaces it.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi", "uvicorn.access"):
        library = logging.getLogger(name)
        library.handlers.clear()
        library.setLevel(logging.NOTSET)  # the root's level governs (a uvicorn Config sets its own)
        library.propagate = name != "uvicorn.access"
    # Migrations are announced once by us; yoyo's step-by-step lines are noise at start.
    logging.getLogger("yoyo").setLevel(max(logging.WARNING, numeric))

    renderer = bytes_renderer if binary is not None else text_renderer
    wrapper = structlog.make_filtering_bound_logger(numeric)
    structlog.configure(
        processors=[*_chain(stdlib=False), *tail, renderer],
        wrapper_class=wrapper,
        logger_factory=(
            structlog.BytesLoggerFactory(binary) if binary is not None else structlog.WriteLoggerFactory(out)
        ),
        cache_logger_on_first_use=True,
    )
    # The access line's fields are all bounded values of ours, given explicitly: no context to
    # merge, nothing to scrub; level, time and the renderer are all it needs.
    access_renderer = render_access_text if fmt == "text" and binary is not None else renderer
    _access.update(
        processors=[_timestamper, access_renderer], wrapper=wrapper, out=binary, text=out, level=numeric
    )


#: The longest an access line waits in the buffer before it is written.
FLUSH_DELAY_S = 0.1

#: How the access logger is made; empty until :func:`configure` ran.
_access: dict[str, Any] = {}


def reset() -> None:
    """Undo :func:`configure` (tests): no handler of ours, structlog's defaults, and access
    lines to the stdlib logger again."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "gengate"]:
        root.removeHandler(handler)
    structlog.reset_defaults()
    _access.clear()


def event_logger(name: str) -> Any:
    """A structlog logger named `name`, bound now to the current configuration (fast: no proxy)."""
    return structlog.get_logger().bind(logger=name)


def access_wanted() -> bool:
    """Whether access lines are written at all: not above `info` (a level of `warning` keeps
    them out, as it keeps out every other `info` line)."""
    return not _access or _access["level"] <= logging.INFO


def access_logger() -> Any:
    """The logger of the per-request line, on structlog's shortest path (see :func:`configure`).
    In a process that did not configure logging (an app embedded elsewhere), the line goes to
    the stdlib logger `gengate.access`, for the host's own configuration to place."""
    if not _access:
        return structlog.wrap_logger(
            logging.getLogger("gengate.access"),
            processors=[structlog.processors.KeyValueRenderer(key_order=["event"])],
            wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        )
    binary = _access["out"]
    if binary is not None and _access["processors"][-1] is render_access_text:
        return AccessLine(DelayFlushed(binary))
    logger = (
        structlog.BytesLogger(cast(BinaryIO, DelayFlushed(binary)))
        if binary is not None
        else structlog.WriteLogger(_access["text"])
    )
    return structlog.wrap_logger(
        logger, processors=_access["processors"], wrapper_class=_access["wrapper"]
    ).bind(logger="gengate.access", level="info")


class AccessLine:
    """The text access line straight into the buffered stream, rendered as structlog's chain for
    it would (:func:`render_access_text`), without the bound logger's call (a copy of its
    context, a loop over the chain, a lock): 1.7 us of the line's 8 us on the status path, in
    process. Every other line, the JSON access line included, goes through structlog."""

    __slots__ = ("_out",)

    def __init__(self, out: DelayFlushed) -> None:
        self._out = out

    def info(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        _timestamper(None, "info", fields)
        self._out.write(render_access_text(None, "info", fields) + b"\n")
        self._out.flush()


class BufferedLineHandler(logging.Handler):
    """The stdlib records' handler: each line into the same buffered binary stream as the access
    lines, where a `StreamHandler` writes to stderr's text layer, which is line-buffered and so
    makes one write syscall per line (on a drain, three lines a task). A line below WARNING waits
    for the delayed flush; a warning or worse goes out at once, with every line before it."""

    def __init__(self, out: DelayFlushed) -> None:
        super().__init__()
        self._out = out

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._out.write(self.format(record).encode("utf-8", "backslashreplace") + b"\n")
            if record.levelno >= logging.WARNING:
                self._out.flush_now()
            else:
                self._out.flush()
        except Exception:
            self.handleError(record)


class DelayFlushed:
    """A buffered binary stream whose `flush` is put off by up to `FLUSH_DELAY_S`: under load,
    the lines of many requests go out in one write (group commit, as the store's writers do)
    instead of one write each, which costs more than the line itself; a full buffer is written
    at once by the buffer itself. Outside a loop (another thread) it flushes at once. Lines of
    other writers to the same stream (the stdlib handler flushes stderr after each record, so a
    warning goes out at once, with the access lines before it) stay in order: all go through
    the one buffer. A process killed outright loses at most the last `FLUSH_DELAY_S` of lines."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self._pending = False
        self.write = raw.write  # the buffer's own: no call of ours per line

    def flush(self) -> None:
        if self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self._raw.flush()
            return
        self._pending = True
        loop.call_later(FLUSH_DELAY_S, self._flush_now)

    def flush_now(self) -> None:
        with contextlib.suppress(ValueError, OSError):  # closed, or the reader went away
            self._raw.flush()

    def _flush_now(self) -> None:
        self._pending = False
        self.flush_now()
