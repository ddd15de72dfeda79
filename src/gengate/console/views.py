"""The small view-model layer: what templates show, computed from domain records.

Templates only lay out; the formatting of times and sizes, which preview a result file gets and
the per-state facts of a task are decided here, once, and tested without a browser.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson

from gengate.api.context import ApiContext
from gengate.domain.task import Task

STATIC_PREFIX = "/console/static/"


@functools.cache
def _asset_version(path: str) -> str:
    data = (resources.files("gengate.console") / "static" / path).read_bytes()
    return hashlib.sha256(data).hexdigest()[:12]


def static_url(path: str) -> str:
    """A packaged asset's URL, versioned by its content so it can be cached for a year."""
    return f"{STATIC_PREFIX}{path}?v={_asset_version(path)}"


def when(ms: int | None) -> str:
    """Unix ms as UTC `YYYY-MM-DD HH:MM:SS`; an em dash for none."""
    if ms is None:
        return "—"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S")


def duration(ms: int | float | None) -> str:
    if ms is None:
        return "—"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n = n / 1024  # type: ignore[assignment]
    return f"{n:.1f} GiB"


def credits(n: int | None) -> str:
    return "unlimited" if n is None else f"{n:,}"


def pretty_json(text: str | None) -> str:
    if not text:
        return ""
    try:
        return orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return text


FILTERS: dict[str, Any] = {
    "when": when,
    "duration": duration,
    "size": size,
    "credits": credits,
    "pretty_json": pretty_json,
}


@dataclass(frozen=True, slots=True)
class Preview:
    """A result file as a page shows it: `kind` is image, video, audio or file."""

    name: str
    url: str
    content_type: str
    size: int
    kind: str


def preview_kind(content_type: str) -> str:
    major = content_type.split("/", 1)[0]
    return major if major in ("image", "video", "audio") else "file"


def previews(task: Task, ctx: ApiContext) -> list[Preview]:
    """The task's result files with their signed URLs (none unless it succeeded)."""
    urls = ctx.links.result_urls(task)
    return [
        Preview(file.name, url, file.content_type, file.size, preview_kind(file.content_type))
        for file, url in zip(task.files, urls, strict=False)
    ]


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task for the list and its page."""

    task: Task
    input_json: str
    previews: list[Preview]

    @property
    def finished(self) -> bool:
        return self.task.state.is_terminal()

    @property
    def canceled(self) -> bool:
        return self.task.fail_code == "CANCELED"

    @property
    def progress(self) -> int:
        return int(self.task.progress or (100 if self.finished else 0))


def task_view(task: Task, ctx: ApiContext) -> TaskView:
    return TaskView(task, pretty_json(task.input_json), previews(task, ctx))
