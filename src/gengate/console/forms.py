"""The playground's form, made from a mode's input JSON Schema (what `GET /api/v1/models`
shows), and the form's answer turned back into an input for the same validation as the API.

Every property but `mode` becomes one field: an enum a select, an integer or number a number
field with its range, a boolean a checkbox, a URL or a list of URLs a URL field or a text area
with one per line, a long string a text area, anything else JSON. An empty field is left out,
so the model's default applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from gengate.domain.errors import BadRequest

FIELD_PREFIX = "in."
#: Strings longer than this get a text area.
LONG_STRING = 200


@dataclass(frozen=True, slots=True)
class Field:
    """One input of the form: `widget` is textarea, number, select, checkbox, url, urls or json."""

    name: str
    widget: str
    label: str
    description: str
    required: bool
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    step: str = "any"
    options: tuple[str, ...] = ()
    max_length: int | None = None

    @property
    def html_name(self) -> str:
        return FIELD_PREFIX + self.name

    @property
    def html_id(self) -> str:
        return "f-" + self.name.replace("_", "-")

    def shown(self, values: dict[str, Any]) -> str:
        """The value the field shows: what was sent last time, else the default."""
        value = values.get(self.name, self.default)
        if value is None:
            return ""
        if self.widget == "urls" and isinstance(value, list):
            return "\n".join(str(v) for v in value)
        if self.widget == "json":
            return orjson.dumps(value).decode()
        if isinstance(value, bool):
            return "on" if value else ""
        return str(value)


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    if ref.startswith("#/$defs/"):
        resolved: dict[str, Any] = schema.get("$defs", {})[ref.removeprefix("#/$defs/")]
        return resolved
    return schema


def _non_null(prop: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The property's schema without a `null` alternative, and whether null was one."""
    options = prop.get("anyOf")
    if not options:
        return prop, False
    rest = [o for o in options if o.get("type") != "null"]
    if len(rest) == 1:
        return {**rest[0], **{k: v for k, v in prop.items() if k != "anyOf"}}, True
    return prop, False


def _is_url(name: str, prop: dict[str, Any]) -> bool:
    return prop.get("format") == "uri" or name.endswith(("url", "_url", "_image", "image"))


def fields_of(schema: dict[str, Any]) -> list[Field]:
    body = _resolve(schema)
    required = set(body.get("required", ()))
    fields = []
    for name, raw in body.get("properties", {}).items():
        if name == "mode":
            continue
        prop, _nullable = _non_null(raw)
        kind = prop.get("type")
        common = {
            "name": name,
            "label": name.replace("_", " ").capitalize(),
            "description": prop.get("description", raw.get("description", "")),
            "required": name in required,
            "default": raw.get("default"),
        }
        if "enum" in prop:
            fields.append(Field(widget="select", options=tuple(str(v) for v in prop["enum"]), **common))
        elif kind in ("integer", "number"):
            fields.append(
                Field(
                    widget="number",
                    minimum=prop.get("minimum"),
                    maximum=prop.get("maximum"),
                    step="1" if kind == "integer" else "any",
                    **common,
                )
            )
        elif kind == "boolean":
            fields.append(Field(widget="checkbox", **common))
        elif kind == "array" and _is_url(name.removesuffix("s"), prop.get("items", {})):
            fields.append(Field(widget="urls", **common))
        elif kind == "string" and _is_url(name, prop):
            fields.append(Field(widget="url", max_length=prop.get("maxLength"), **common))
        elif kind == "string":
            long = (prop.get("maxLength") or LONG_STRING + 1) > LONG_STRING
            fields.append(
                Field(widget="textarea" if long else "text", max_length=prop.get("maxLength"), **common)
            )
        else:
            fields.append(Field(widget="json", **common))
    return fields


def input_of(fields: list[Field], form: dict[str, str], mode: str) -> dict[str, Any]:
    """The form's answer as a model input: typed by the fields, empty fields left out. The
    result goes through the same schema validation as an API submit."""
    value: dict[str, Any] = {"mode": mode}
    for field in fields:
        raw = form.get(field.html_name)
        if field.widget == "checkbox":
            if raw is not None or field.default is not None:
                value[field.name] = raw is not None
            continue
        if raw is None or not raw.strip():
            continue
        raw = raw.strip()
        try:
            if field.widget == "number":
                value[field.name] = int(raw) if field.step == "1" else float(raw)
            elif field.widget == "urls":
                value[field.name] = [line.strip() for line in raw.splitlines() if line.strip()]
            elif field.widget == "json":
                value[field.name] = orjson.loads(raw)
            else:
                value[field.name] = raw
        except (ValueError, orjson.JSONDecodeError):
            kind = (
                "a whole number" if field.step == "1" else "a number" if field.widget == "number" else "JSON"
            )
            raise BadRequest(f"{field.label}: enter {kind}.") from None
    return value
