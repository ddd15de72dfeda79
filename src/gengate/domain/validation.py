"""Converting client JSON into typed records, with messages that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gengate.domain.errors import BadRequest

T = TypeVar("T")


def convert(raw: Any, type_: type[T], where: str) -> T:
    """`raw` as `type_`, or `bad_request` saying which field of `where` is wrong and why."""
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        raise BadRequest(field_message(str(exc), where)) from None


def field_message(text: str, where: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.width`"; clients read `input.width`."""
    message, _, at = text.partition(" - at `$")
    if at:
        return f"{where}{at.rstrip('`')}: {message}"
    return f"{where}: {message}"
