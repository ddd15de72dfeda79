"""Copying upstream results into the gateway's files: streamed, bounded, named by their type.

The result's decoded bytes go to disk as they arrive, counted on the way: past the provider's
`max_result_bytes` the copy stops (a gzip bomb stops there too, never inflated in memory) and
the cut file is removed, so no half result is ever taken for a whole one.
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import anyio
import httpx

from gengate.domain.files import OutputFile
from gengate.net.bounded import BodyError, aiter_capped
from gengate.providers.base import RunContext
from gengate.providers.relay.errors import failure_for_body
from gengate.providers.relay.follow import canceled

if TYPE_CHECKING:
    from gengate.providers.relay.upstream import Upstream

_SUFFIX = re.compile(r"\.[a-z0-9]{1,8}")


async def mirror(up: Upstream, ctx: RunContext, urls: Sequence[str]) -> list[OutputFile]:
    """Copy each result into `ctx.output_dir`, streaming: our URLs outlive the upstream's."""
    outputs = []
    for index, url in enumerate(urls):
        if ctx.cancel.is_set():
            raise canceled()
        outputs.append(await up.download(url, ctx.output_dir, index))
    return outputs


async def save(answer: httpx.Response, folder: Path, index: int, limit: int) -> OutputFile:
    """The body of a streamed `answer` as `folder/<index><suffix>`, at most `limit` bytes."""
    content_type, suffix = type_and_suffix(answer)
    path = folder / f"{index}{suffix}"
    try:
        async with await anyio.open_file(path, "wb") as file:
            async for piece in aiter_capped(answer, limit):
                await file.write(piece)
    except BaseException as exc:
        path.unlink(missing_ok=True)
        if isinstance(exc, BodyError):
            raise failure_for_body("a result", exc, "max_result_bytes") from exc
        raise
    return OutputFile(path, content_type)


def type_and_suffix(answer: httpx.Response) -> tuple[str, str]:
    """The MIME type (header, else guessed from the URL) and a file suffix to match."""
    url_suffix = PurePosixPath(answer.url.path).suffix.lower()
    url_suffix = url_suffix if _SUFFIX.fullmatch(url_suffix) else ""
    content_type = answer.headers.get("content-type", "").split(";")[0].strip().lower()
    if not content_type or content_type == "application/octet-stream":
        content_type = mimetypes.guess_type("x" + url_suffix)[0] or "application/octet-stream"
    suffix = url_suffix or mimetypes.guess_extension(content_type) or ".bin"
    return content_type, suffix
