"""The model catalogue: which models exist, what each accepts, and how input is checked."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

import msgspec

from gengate.domain.errors import BadRequest, ModelNotFound
from gengate.domain.validation import convert


class InputCheck(Protocol):
    """A mode whose input is checked by a schema learnt at run time (a model server publishes it)
    instead of its struct: `check` returns the input (without `mode`) or raises BadRequest;
    `json_schema` is what `GET /api/v1/models` shows."""

    def check(self, value: dict[str, Any]) -> dict[str, Any]: ...

    def json_schema(self) -> dict[str, Any]: ...


class ModelSpec(msgspec.Struct, frozen=True, kw_only=True):
    """A model clients can call.

    Fields: `id`, `inputs` (mode -> input struct; the first mode is the default), `provider`
    (name of the provider that runs it), `price` (credits per output), `timeout_s` (longest a
    run may take), `concurrency` (runs at once in one worker), `max_attempts` (claims before a
    lost task fails), `options` (passed to the provider).
    """

    id: str
    inputs: Mapping[str, type[msgspec.Struct]]
    provider: str
    price: int = 1
    timeout_s: float = 600.0
    concurrency: int = 4
    max_attempts: int = 3
    options: Mapping[str, Any] = msgspec.field(default_factory=dict)
    #: Running tasks of this model at once over every worker of the cluster; None: no cap.
    max_running: int | None = None
    #: First backoff after a transient failure; doubled per attempt, with jitter.
    retry_backoff_s: float = 2.0
    #: Pending tasks of this model past which submits are refused; None: the server's default.
    max_queue: int | None = None
    #: Modes checked by a schema known only at run time (cog models), instead of their struct.
    input_checks: Mapping[str, InputCheck] = msgspec.field(default_factory=dict)

    @property
    def modes(self) -> tuple[str, ...]:
        return tuple(self.inputs)


class ValidatedInput(msgspec.Struct, frozen=True):
    mode: str
    value: dict[str, Any]


class Catalogue:
    """Models by id; lookups raise the client-facing errors."""

    def __init__(self, specs: Mapping[str, ModelSpec]) -> None:
        self._specs = dict(specs)

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._specs

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, model_id: str) -> ModelSpec:
        try:
            return self._specs[model_id]
        except KeyError:
            raise ModelNotFound(f"Model '{model_id}' does not exist.") from None

    def validate_input(self, spec: ModelSpec, raw: object) -> ValidatedInput:
        """Check `raw` against the schema of its mode; the message names the offending field."""
        if not isinstance(raw, dict):
            raise BadRequest("`input` must be a JSON object.")
        mode = raw.get("mode")
        if mode is None:
            if len(spec.inputs) > 1:
                raise BadRequest(f"`input.mode` is required; one of: {', '.join(spec.modes)}.")
            mode = spec.modes[0]
            raw = {**raw, "mode": mode}
        if not isinstance(mode, str) or mode not in spec.inputs:
            raise BadRequest(
                f"`input.mode` {mode!r} is not supported by model '{spec.id}'; "
                f"one of: {', '.join(spec.modes)}."
            )
        check = spec.input_checks.get(mode)
        if check is not None:
            return ValidatedInput(
                mode, {"mode": mode, **check.check({k: v for k, v in raw.items() if k != "mode"})}
            )
        value = convert(raw, spec.inputs[mode], "input")
        return ValidatedInput(mode, msgspec.to_builtins(value))
