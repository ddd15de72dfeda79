"""Integers a body may hold: those that fit in 64 bits, signed or unsigned.

orjson reads an integer past 64 bits as a float (`2**64` became `1.8446744073709552e+19`) or,
past the float range, fails with "number is infinity". Neither says which field is at fault, and
the first silently changes what a client sent. A body where orjson produced a float that large
is read once more here, with the standard library keeping every integer exact, to find such an
integer and name its field; the fast path pays only a size check on each float.
"""

from __future__ import annotations

import json
import re
from typing import Any

#: The integers a body may hold: int64's lowest to uint64's highest, as orjson keeps them.
LOWEST = -(2**63)
HIGHEST = 2**64 - 1
#: A float at least this large may stand for an integer orjson could not keep.
SUSPECT = 2.0**63
#: Paths longer than this are cut in messages.
MAX_PATH_CHARS = 200

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class _Wide:
    """Stands in for an integer out of range: never made into an int (past 4300 digits Python
    refuses to, and it is refused anyway)."""

    __slots__ = ()


_WIDE = _Wide()


def _parse_int(text: str) -> int | _Wide:
    if len(text) <= 21:  # 20 digits and a sign hold every 64-bit integer
        number = int(text)
        if LOWEST <= number <= HIGHEST:
            return number
    return _WIDE


def wide_integer_message(raw: bytes) -> str | None:
    """`"input.seed: ..."` for the first integer of `raw` that does not fit in 64 bits, or None
    when there is none (or `raw` is no JSON the standard library reads)."""
    try:
        value = json.loads(raw, parse_int=_parse_int)
    except (ValueError, RecursionError):
        return None
    path = _path_of_wide(value)
    if path is None:
        return None
    if len(path) > MAX_PATH_CHARS:
        path = path[: MAX_PATH_CHARS - 1] + "…"
    return f"{path}: integer out of range; integers must fit in 64 bits (-2**63 to 2**64 - 1)."


def _path_of_wide(value: Any) -> str | None:
    """The path (`input.data[2]`, `meta["a b"]`) of the first wide integer, in document order."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, path = stack.pop()
        if item is _WIDE:
            return path or "body"
        if isinstance(item, dict):
            children = [(child, _key_path(path, key)) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(child, f"{path}[{index}]") for index, child in enumerate(item)]
        else:
            continue
        stack.extend(reversed(children))
    return None


def _key_path(path: str, key: str) -> str:
    if _NAME.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"
