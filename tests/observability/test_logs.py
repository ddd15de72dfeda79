"""One log format for every line of the process: gengate's, the libraries', the access line.

The real configuration writes into a buffer; lines are made the way each source makes them
(stdlib loggers of uvicorn, httpx and asyncpg; structlog events; uvicorn's own logging set-up).
"""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest
from logcapture import configure_logs

from gengate.observability import logs
from gengate.observability.context import bound_task
from gengate.server.run import server_config
from gengate.settings import Settings, load_settings
from gengate.startup import StartupError

__all__ = ["configure_logs"]

LIBRARIES = ("uvicorn.error", "httpx", "asyncpg", "gengate.worker.run")
#: `time LEVEL logger: message key=value ...`
TEXT_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: ")


def test_json_lines_of_every_library_parse(configure_logs: Any) -> None:
    captured = configure_logs("info", "json")
    for name in LIBRARIES:
        logging.getLogger(name).info("hello from %s", name)
    logs.event_logger("gengate.access").info("request", method="GET", status=200)
    records = captured.records()
    assert [r["logger"] for r in records] == [*LIBRARIES, "gengate.access"]
    assert records[0]["event"] == "hello from uvicorn.error"
    assert all(r["level"] == "info" and r["timestamp"].endswith("Z") for r in records)
    assert records[-1]["method"] == "GET"
    assert records[-1]["status"] == 200


def test_text_lines_have_one_shape(configure_logs: Any) -> None:
    captured = configure_logs("info", "text")
    for name in LIBRARIES:
        logging.getLogger(name).warning("hello")
    logs.event_logger("gengate.access").info("request", route="/api/v1/statusTask/{model}", status=200)
    lines = captured.lines()
    assert len(lines) == len(LIBRARIES) + 1
    assert all(TEXT_LINE.match(line) for line in lines), lines
    assert lines[-1].endswith("INFO gengate.access: request route=/api/v1/statusTask/{model} status=200")


ACCESS = {
    "method": "GET",
    "route": "/api/v1/statusTask/{model}",
    "status": 200,
    "duration_ms": 1.5,
    "key_id": "key_0123456789abcdef",
    "trace_id": "96d98650-f9b1-4c45-9eb4-38b49d9d8923",
    "task_id": None,
}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_fast_access_line_is_the_one_format_too(configure_logs: Any, fmt: str) -> None:
    """The request line skips the general processors: it must still read like every other line."""
    captured = configure_logs("info", fmt)
    logs.access_logger().info("request", **ACCESS)
    logs.event_logger("gengate.access").info("request", **ACCESS)
    fast, general = captured.lines()
    if fmt == "text":
        assert fast.split(" ", 1)[1] == general.split(" ", 1)[1]
        assert TEXT_LINE.match(fast)
    else:
        fast_record, general_record = captured.records()
        assert fast_record.pop("timestamp")
        assert general_record.pop("timestamp")
        assert fast_record == general_record


def test_without_configuration_the_access_line_goes_to_the_stdlib_logger(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An app embedded in another program leaves logging to that program."""
    logs.reset()
    with caplog.at_level(logging.INFO, logger="gengate.access"):
        logs.access_logger().info("request", **ACCESS)
    [record] = caplog.records
    assert record.name == "gengate.access"
    assert "route='/api/v1/statusTask/{model}'" in record.getMessage()


def test_the_level_filters_stdlib_records_and_structlog_events(configure_logs: Any) -> None:
    captured = configure_logs("warning", "json")
    logging.getLogger("httpx").info("dropped")
    logs.event_logger("gengate.access").info("dropped")
    logging.getLogger("httpx").warning("kept")
    logs.event_logger("gengate.access").error("kept too")
    assert [r["event"] for r in captured.records()] == ["kept", "kept too"]


def test_unknown_format_or_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log format"):
        logs.configure("info", "xml")
    with pytest.raises(ValueError, match="log level"):
        logs.configure("loud", "json")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secrets_are_scrubbed_in_both_formats(configure_logs: Any, fmt: str) -> None:
    captured = configure_logs("info", fmt)
    key = "gg_abcdef" + "Q" * 30
    logging.getLogger("httpx").info(
        'HTTP Request: POST %s "HTTP/1.1 200 OK"', "http://h/cb?token=t0psecret&a=1"
    )
    try:
        raise RuntimeError(f"failed with whsec_{'Z' * 32}")
    except RuntimeError:
        logging.getLogger("gengate.x").exception("while using %s", key)
    logs.event_logger("gengate.y").info(f"with {key}", url="http://h/x?client_secret=s3cr3t", count=3)
    text = captured.text()
    for secret in ("t0psecret", "Q" * 30, "Z" * 32, "s3cr3t"):
        assert secret not in text
    # A stdlib message is scrubbed once, when it is made: counted, not counted again.
    assert "POST http://h/cb?[2 params] " in text
    assert "gg_abcdef…[redacted]" in text
    assert "RuntimeError" in text  # the traceback is there, scrubbed


def test_a_scrubbed_json_line_still_parses(configure_logs: Any) -> None:
    """A secret right before a quote: scrubbing the rendered line once more would eat the
    backslash that escapes the quote, and the line would no longer be JSON."""
    captured = configure_logs("info", "json")
    logging.getLogger("gengate.x").warning('upstream said token=abc123secret" and more')
    [record] = captured.records()
    assert record["event"] == 'upstream said token=[redacted]" and more'


def test_a_bound_task_names_every_line_inside_and_none_after(configure_logs: Any) -> None:
    captured = configure_logs("info", "json")
    with bound_task("task_1", "trace-abc-123", attempt=2):
        logging.getLogger("httpx").info("inside")
        logs.event_logger("gengate.z").info("inside too")
    logging.getLogger("httpx").info("after")
    inside, inside_too, after = captured.records()
    for record in (inside, inside_too):
        assert (record["task_id"], record["trace_id"], record["attempt"]) == ("task_1", "trace-abc-123", 2)
    assert "task_id" not in after
    assert "trace_id" not in after


def test_uvicorn_logs_through_the_one_handler(configure_logs: Any, settings: Settings) -> None:
    """uvicorn configures logging as it loads its config: it must not put its own handlers
    and format back."""
    captured = configure_logs("info", "json")
    server_config(object(), settings).configure_logging()
    logging.getLogger("uvicorn.error").info("Started server process")
    assert logging.getLogger("uvicorn.error").handlers == []
    assert [r["event"] for r in captured.records()] == ["Started server process"]


def test_uvicorns_access_log_stays_off_whatever_configures_last(
    configure_logs: Any, settings: Settings
) -> None:
    """`gengate serve --processes N`: each process configures uvicorn first, then gengate's
    logging (as it builds its app); gengate's request line is the only one either way."""
    server_config(object(), settings).configure_logging()
    captured = configure_logs("info", "json")
    logging.getLogger("uvicorn.access").info('127.0.0.1:1 - "GET /healthz HTTP/1.1" 200')
    assert captured.records() == []


def test_the_settings_read_from_the_environment(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (settings.log_format, settings.access_log, settings.log_level) == ("text", True, "info")
    monkeypatch.setenv("GENGATE_LOG_FORMAT", "json")
    monkeypatch.setenv("GENGATE_ACCESS_LOG", "false")
    monkeypatch.setenv("GENGATE_LOG_LEVEL", "warning")
    loaded = load_settings(data_dir=settings.data_dir)
    assert (loaded.log_format, loaded.access_log, loaded.log_level) == ("json", False, "warning")
    monkeypatch.setenv("GENGATE_LOG_FORMAT", "xml")
    with pytest.raises(StartupError, match="GENGATE_LOG_FORMAT: must be one of 'text' or 'json'"):
        load_settings(data_dir=settings.data_dir)
