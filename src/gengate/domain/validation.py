"""Converting client JSON into typed records, with messages that name the field."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

from gengate.domain.errors import BadRequest

T = TypeVar("T")


def convert(raw: Any, type_: type[T], where: str) -> T:
    """`raw` as `type_`, or `bad_request` saying which field of `where` is wrong and why.

    JSON Schema counts `2.0` as an integer, and so do clients whose numbers are all floats:
    when strict conversion fails, integral floats are read as integers and it is tried once
    more (a cost only on that path)."""
    try:
        return msgspec.convert(raw, type_, strict=True)
    except msgspec.ValidationError as exc:
        integral = _integral_floats(raw)
        if integral is not raw:
            try:
                return msgspec.convert(integral, type_, strict=True)
            except msgspec.ValidationError:
                pass
        raise BadRequest(field_message(str(exc), where)) from None


def _integral_floats(value: Any) -> Any:
    """`value` with every float that holds an exact integer (within 2**53) made an int; the
    very same object when there is none."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= 2**53 else value
    if isinstance(value, dict):
        items = {key: _integral_floats(item) for key, item in value.items()}
        return items if any(items[key] is not value[key] for key in value) else value
    if isinstance(value, list):
        converted = [_integral_floats(item) for item in value]
        return converted if any(a is not b for a, b in zip(converted, value, strict=True)) else value
    return value


def field_message(text: str, where: str) -> str:
    """msgspec says "Expected `int`, got `str` - at `$.width`"; clients read `input.width`."""
    message, _, at = text.partition(" - at `$")
    if at:
        return f"{where}{at.rstrip('`')}: {message}"
    return f"{where}: {message}"
