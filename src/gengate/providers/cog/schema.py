"""A cog model's input schema, as its server publishes it, checking clients' input at submit.

`GET /openapi.json` of a cog server holds the predictor's inputs as the `Input` component
(enums are components of their own, named by `$ref`). Once a server of the pool has published
it, input is checked against it (types, required fields, enums, bounds; a field the model does
not take is refused, where cog would silently drop it), so a mistake is a 400 naming the field
instead of a task that fails. Until then, or where the server publishes no schema, input
passes through and the server judges it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsonschema_rs
import msgspec

from gengate.domain.errors import BadRequest

_REF_PREFIX = "#/components/schemas/"
_SHOWN_WITHOUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Any input the model server takes: its schema is not known (yet).",
    "additionalProperties": True,
}


class CogInput(msgspec.Struct, kw_only=True):
    """Input of a cog model: the predictor's own fields, checked against its server's schema."""

    mode: str | None = None


def input_schema(openapi: dict[str, Any]) -> dict[str, Any] | None:
    """The `Input` component of a cog server's OpenAPI document as one self-contained JSON
    schema (the components it names moved under `$defs`); None when there is none."""
    components = openapi.get("components")
    schemas = components.get("schemas") if isinstance(components, dict) else None
    if not isinstance(schemas, dict) or not isinstance(schemas.get("Input"), dict):
        return None
    found: dict[str, Any] = _rebased(dict(schemas["Input"]))
    if isinstance(found.get("properties"), dict):
        found["additionalProperties"] = False
    found.pop("title", None)
    defs = {name: _rebased(schema) for name, schema in schemas.items() if name not in ("Input", "Output")}
    if defs:
        found["$defs"] = defs
    return found


def _rebased(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            key: "#/$defs/" + item[len(_REF_PREFIX) :]
            if key == "$ref" and isinstance(item, str) and item.startswith(_REF_PREFIX)
            else _rebased(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rebased(item) for item in value]
    return value


class CogSchema:
    """The input check of one cog provider's modes: the schema its servers publish, once known.

    `on_use` is called at each check (the provider starts watching its servers, which fetches
    the schema), so an API process that never runs a task still learns it.
    """

    def __init__(self, on_use: Callable[[], None] = lambda: None) -> None:
        self._on_use = on_use
        self._schema: dict[str, Any] | None = None
        self._validator: jsonschema_rs.Validator | None = None

    @property
    def known(self) -> bool:
        return self._schema is not None

    def learn(self, openapi: dict[str, Any]) -> bool:
        """Take the schema of a server's OpenAPI document; False when it has none or a broken one."""
        schema = input_schema(openapi)
        if schema is None:
            return False
        try:
            validator = jsonschema_rs.Draft7Validator(schema)
        except (ValueError, jsonschema_rs.ReferencingError):
            return False
        self._schema, self._validator = schema, validator
        return True

    def check(self, value: dict[str, Any]) -> dict[str, Any]:
        """`value` (without `mode`) when the schema accepts it; BadRequest naming the field if not."""
        self._on_use()
        if self._validator is None:
            return value
        error = next(iter(self._validator.iter_errors(value)), None)
        if error is None:
            return value
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.instance_path)
        raise BadRequest(f"input{where}: {error.message[:300]}")

    def json_schema(self) -> dict[str, Any]:
        """The schema shown in `GET /api/v1/models` (an open object until it is known)."""
        return self._schema if self._schema is not None else _SHOWN_WITHOUT_SCHEMA
