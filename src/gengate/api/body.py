"""Reading a JSON body: cut past the size limit, and parsed strictly.

Malformed JSON, NaN and Infinity, numbers out of range (integers past 64 bits, named by field),
invalid UTF-8 and deep nesting are all `bad_request`. The size of every route's body is guarded
before this, in :mod:`api.guard`.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from gengate.api.guard import too_large
from gengate.api.json_numbers import SUSPECT, wide_integer_message
from gengate.domain.errors import BadRequest

#: Deepest nesting of objects and arrays a body may have. orjson parses up to 1024 levels but
#: writes only 254, and no generation input needs more than a handful.
MAX_DEPTH = 32


async def read_json_object(request: Request, limit: int) -> dict[str, Any]:
    """The body as a JSON object; `RequestGuard` has checked its declared size, and the count
    here cuts a body without one (chunked) even where the app runs without that guard."""
    return await receive_json_object(request.receive, limit)


async def receive_json_object(receive: Receive, limit: int) -> dict[str, Any]:
    """:func:`read_json_object` in raw ASGI (the hot path's submits): the body's messages read
    as `Request.stream` reads them, a client gone before the end is `ClientDisconnect` there too."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        elif message["type"] == "http.disconnect":
            raise ClientDisconnect()
    raw = b"".join(chunks)
    if not raw.strip():
        raise BadRequest("The request body is empty; send a JSON object.")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # An integer past the float range is "infinity" to orjson: name its field if it is one.
        wide = wide_integer_message(raw) if "infinity" in exc.msg else None
        raise BadRequest(
            wide or f"The request body is not valid JSON: {exc.msg} at byte {exc.pos}."
        ) from None
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object.")
    too_deep, suspect = _scan(value, MAX_DEPTH)
    if too_deep:
        raise BadRequest(f"The request body is nested deeper than {MAX_DEPTH} levels.")
    if suspect:
        wide = wide_integer_message(raw)
        if wide is not None:
            raise BadRequest(wide)
    return value


def optional_string(body: dict[str, Any], name: str) -> str | None:
    """A body field that, when present and not null, must be a string."""
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"`{name}` must be a string.")
    return value


#: What `_scan` descends into (a tuple: `dict | list` would make a union at every value).
_CONTAINERS = (dict, list)


def _scan(value: Any, limit: int) -> tuple[bool, bool]:
    """Whether containers nest deeper than `limit`, and whether a float is large enough to be
    an integer orjson could not keep (:mod:`api.json_numbers`); iterative, so depth costs no stack."""
    suspect = False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True, suspect
        for child in item.values() if isinstance(item, dict) else item:
            if isinstance(child, _CONTAINERS):
                stack.append((child, depth + 1))
            elif type(child) is float and not -SUSPECT < child < SUSPECT:
                suspect = True
    return False, suspect
