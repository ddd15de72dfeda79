"""A cog prediction's output as gengate results: files for what names a file, JSON for the rest.

cog returns a file as a `data:` URI (no upload URL configured) or as an http(s) URL (the
server uploaded it), alone or inside lists and dicts. Each of those becomes one of our result
files, in the order met; whatever else the model returned (numbers, text, the non-file parts
of a dict) is the task's plain output. Files are written to disk as they are met, bounded by
`max_result_bytes`, so a model cannot make us hold more than one of them in memory.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import mimetypes
import re
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gengate.domain.files import OutputFile
from gengate.providers.relay.errors import provider_fault

_DATA_URI = re.compile(
    r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?P<params>(;[^,;]*)*?)(?P<b64>;base64)?,", re.ASCII
)
_URL = re.compile(r"https?://\S+", re.ASCII)
#: Where nothing plain remains of an output.
_NOTHING = object()

#: Fetches one result URL into `folder/<index><suffix>` (the provider's bounded download).
Download = Callable[[str, Path, int], Awaitable[OutputFile]]


def is_file(value: object) -> bool:
    """Whether a leaf of the output names a file: a `data:` URI or an http(s) URL."""
    return isinstance(value, str) and (
        _DATA_URI.match(value) is not None or _URL.fullmatch(value) is not None
    )


@dataclass(slots=True)
class Collected:
    """The result of an output. Fields: `files` (ours, in order), `plain` (the rest of the value;
    `has_plain` False when nothing but files came back)."""

    files: list[OutputFile] = field(default_factory=list)
    plain: Any = None
    has_plain: bool = False


async def collect(output: Any, folder: Path, download: Download, max_bytes: int) -> Collected:
    """Write every file `output` names into `folder`; keep what is left as the plain value."""
    collected = Collected()

    async def walk(value: Any) -> Any:
        if is_file(value):
            index = len(collected.files)
            if _DATA_URI.match(value):
                saved = await asyncio.to_thread(write_data_uri, value, folder, index, max_bytes)
            else:
                saved = await download(value, folder, index)
            collected.files.append(saved)
            return _NOTHING
        if isinstance(value, list):
            items = [await walk(item) for item in value]
            kept = [item for item in items if item is not _NOTHING]
            return kept if kept or not value else _NOTHING
        if isinstance(value, dict):
            pairs = {key: await walk(item) for key, item in value.items()}
            kept_pairs = {key: item for key, item in pairs.items() if item is not _NOTHING}
            return kept_pairs if kept_pairs or not value else _NOTHING
        return value

    rest = await walk(output)
    if rest is not _NOTHING and rest is not None:
        collected.plain, collected.has_plain = rest, True
    return collected


def write_data_uri(uri: str, folder: Path, index: int, max_bytes: int) -> OutputFile:
    """A `data:` URI's bytes as `folder/<index><suffix>`; over `max_bytes` is a provider error."""
    match = _DATA_URI.match(uri)
    if match is None:  # pragma: no cover - callers check first
        raise provider_fault("an output is not a data URI")
    payload = uri[match.end() :]
    encoded_limit = (max_bytes + 2) // 3 * 4 if match["b64"] else 3 * max_bytes  # base64, or %XX
    if len(payload) > encoded_limit:
        raise provider_fault(
            f"an output is larger than {max_bytes} bytes (the provider's `max_result_bytes`)"
        )
    try:
        data = (
            base64.b64decode(payload, validate=True)
            if match["b64"]
            else urllib.parse.unquote_to_bytes(payload)
        )
    except (binascii.Error, ValueError) as exc:
        raise provider_fault("an output is a data URI whose data is not valid base64") from exc
    if len(data) > max_bytes:
        raise provider_fault(
            f"an output is larger than {max_bytes} bytes (the provider's `max_result_bytes`)"
        )
    content_type = (match["type"] or "text/plain").lower()
    suffix = mimetypes.guess_extension(content_type) or ".bin"
    path = folder / f"{index}{suffix}"
    path.write_bytes(data)
    return OutputFile(path, content_type)
