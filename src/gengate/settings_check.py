"""Mistakes in `gengate.toml` and `GENGATE_*` variables, said in one line that names where they are.

pydantic ignores keys it does not know and reports bad values as a dump of locations and error
types. Here the file is read first (a syntax error names the file and line), every key is checked
against the settings and the tables it may be in (`[models.x] has no setting "timout_s"; did you
mean "timeout_s"?`), and a validation error becomes `<file or variable>: [table] field: must be
<what> (got <value>)`.
"""

from __future__ import annotations

import json
import os
import tomllib
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from gengate.startup import ConfigFileError, did_you_mean, redacted_url

_GOT_LIMIT = 60


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_bytes().decode())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigFileError(f"{path}: not valid TOML: not UTF-8 text") from None
    except OSError as exc:
        raise ConfigFileError(f"{path}: cannot be read ({exc.strerror or exc})") from None


def check_keys(path: Path, data: Mapping[str, Any], settings: type[BaseModel]) -> None:
    """Every key of the file is a setting, a table of the settings, or a setting of such a table."""
    fields = settings.model_fields
    tables = sorted(name for name, field in fields.items() if _table_model(field) is not None)
    for key, value in data.items():
        if key in fields:
            table_model = _table_model(fields[key])
            if table_model is not None and isinstance(value, Mapping):
                for name, table in value.items():
                    if isinstance(table, Mapping):
                        _check_table(path, f"{key}.{name}", table, table_model)
            continue
        if isinstance(value, Mapping):
            near = did_you_mean(key, tables, "[{}]")
            known = near or f"; the tables are {' and '.join(f'[{table}]' for table in tables)}"
            raise ConfigFileError(f"{path}: unknown table [{key}]{known}")
        settings_names = [name for name in fields if name not in tables]
        raise ConfigFileError(f'{path}: unknown setting "{key}"{did_you_mean(key, settings_names)}')


def _check_table(path: Path, table: str, values: Mapping[str, Any], model: type[BaseModel]) -> None:
    if model.model_config.get("extra") == "allow":
        return  # `[providers.x]`: the options of its kind; the kind's builder checks them
    for key in values:
        if key not in model.model_fields:
            near = did_you_mean(key, model.model_fields)
            raise ConfigFileError(f'{path}: [{table}] has no setting "{key}"{near}')


def _table_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of each entry when the field is `dict[str, Model]` (a table of tables)."""
    if typing.get_origin(field.annotation) is dict:
        value_type = typing.get_args(field.annotation)[1]
        if isinstance(value_type, type) and issubclass(value_type, BaseModel):
            return value_type
    return None


def explain(
    exc: ValidationError, settings: type[BaseModel], path: Path | None, overrides: Mapping[str, Any]
) -> ConfigFileError:
    """The first error of `exc`, named by where its value came from (flag, variable, file)."""
    errors = exc.errors()
    first = errors[0]
    loc = tuple(part for part in first["loc"] if isinstance(part, int) or part.isidentifier())
    field, table, name = _field_of(settings, loc)
    source, whole = _source(loc, path, overrides)
    if first["type"] == "extra_forbidden" and table and len(loc) == 3:
        # A misspelt setting of a table, through a variable (`GENGATE_MODELS__X__TIMOUT_S`).
        model = _table_model(settings.model_fields[str(loc[0])])
        near = did_you_mean(name, model.model_fields if model else ())
        text = f'{table} has no setting "{name}"{near}'
    else:
        union = sum(1 for error in errors if _same_field(error["loc"], loc)) > 1
        what = _what(first, field, name, union)
        where = "" if whole else " ".join(part for part in (table, name) if part)
        text = f"{where}: {what}" if where else what
    return ConfigFileError(f"{source}: {text}" if source else text)


def _same_field(loc: tuple[int | str, ...], target: tuple[int | str, ...]) -> bool:
    return tuple(part for part in loc if isinstance(part, int) or part.isidentifier()) == target


def _field_of(settings: type[BaseModel], loc: Sequence[int | str]) -> tuple[FieldInfo | None, str, str]:
    """The field an error is about, its table (`[models.demo]`) and its name as written."""
    fields = settings.model_fields
    if not loc or not isinstance(loc[0], str) or loc[0] not in fields:
        return None, "", ".".join(map(str, loc))
    field = fields[loc[0]]
    table_model = _table_model(field)
    if table_model is not None and len(loc) >= 2:
        table = f"[{loc[0]}.{loc[1]}]"
        rest = loc[2:]
        inner = table_model.model_fields.get(str(rest[0])) if rest else None
        return inner, table, _name(rest)
    return field, "", _name(loc)


def _name(loc: Sequence[int | str]) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc).lstrip(".")


def _what(error: ErrorDetails, field: FieldInfo | None, name: str, union: bool) -> str:
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "is not a setting"
    if kind in {"value_error", "assertion_error"}:
        return str(error["msg"]).removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if kind in {"model_type", "model_attributes_type", "dict_type"}:
        expected = "a table"
    elif union and field is not None and field.description:
        expected = field.description.rstrip(".")
    elif kind == "literal_error":
        expected = "one of " + str((error.get("ctx") or {}).get("expected", ""))
    elif field is not None and "[" not in name:
        expected = _expectation(field)
    else:
        expected = str(error["msg"]).removeprefix("Input should be ").split(",")[0]
        expected = expected.replace("a valid integer", "a whole number").replace("a valid ", "a ")
    return f"must be {expected}" + _got(error.get("input"), field)


def _expectation(field: FieldInfo) -> str:
    """`a number greater than 0`, `a whole number from 0 to 65535`: the field's type and bounds."""
    bounds: dict[str, Any] = {}
    for meta in field.metadata:  # pydantic keeps `gt=0` as `annotated_types.Gt(gt=0)`
        for bound in ("gt", "ge", "lt", "le"):
            if getattr(meta, bound, None) is not None:
                bounds[bound] = getattr(meta, bound)
    noun = _noun(field.annotation)
    if "ge" in bounds and "le" in bounds:
        return f"{noun} from {bounds['ge']} to {bounds['le']}"
    words = {"gt": "greater than", "ge": "at least", "lt": "less than", "le": "at most"}
    limits = " and ".join(f"{words[bound]} {value}" for bound, value in bounds.items())
    return f"{noun} {limits}".strip()


def _noun(annotation: Any) -> str:
    args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
    if typing.get_origin(annotation) in {typing.Union, types.UnionType} and len(args) == 1:
        return _noun(args[0])
    if typing.get_origin(annotation) is typing.Annotated:
        return _noun(args[0])
    nouns: dict[Any, str] = {
        bool: "true or false",
        int: "a whole number",
        float: "a number",
        str: "a string",
        SecretStr: "a string",
        Path: "a path",
    }
    if annotation in nouns:
        return nouns[annotation]
    origin = typing.get_origin(annotation)
    return {list: "a list", dict: "a table"}.get(origin, "a valid value")


def _got(value: Any, field: FieldInfo | None) -> str:
    if field is not None and field.annotation in {SecretStr, SecretStr | None}:
        return ""  # a secret's value is not repeated
    if isinstance(value, str) and "://" in value:
        value = redacted_url(value)
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
    except ValueError:
        text = repr(value)
    if len(text) > _GOT_LIMIT:
        text = text[: _GOT_LIMIT - 1] + "…"
    return f" (got {text})"


def _source(loc: Sequence[int | str], path: Path | None, overrides: Mapping[str, Any]) -> tuple[str, bool]:
    """The variable, else the file, that gave the value at `loc` (nothing for a flag), and
    whether that name says the whole location (`GENGATE_MODELS__X__TIMEOUT_S`)."""
    if loc and loc[0] in overrides:
        return "", False
    names = {name.upper(): name for name in os.environ}
    keys = [str(part).upper() for part in loc if isinstance(part, str)]
    for size in range(len(keys), 0, -1):
        variable = "GENGATE_" + "__".join(keys[:size])
        if variable in names:
            return names[variable], size == len(loc)
    return (str(path) if path is not None else ""), False
