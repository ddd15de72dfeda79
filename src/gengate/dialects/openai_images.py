"""The OpenAI Images dialect: `images.generate`/`images.edit` requests mapped to a model's input,
the images response, and errors as `{"error": {message, type, param, code}}`.

The door is synchronous: one request is one task, answered once it ends. `n` goes to the
model's own count input (a model without one makes one image per task, so `n` > 1 is refused);
`size` goes to its `size` or `width`/`height`. Fields that only tune quality (`quality`,
`style`, `user`, ...) go to a model that takes them and are ignored by one that does not;
fields that change what comes back (`output_format`, a transparent `background`) are refused
by a model that cannot honour them, naming the field in `param`. A model's own input fields
(`seed`, `negative_prompt`, ...) may ride along (the client's `extra_body`).

`error.code` is the gateway's code (DESIGN.md's table, or a failed task's failCode); `type` is
OpenAI's word for the class of error, and the HTTP status picks the client's exception.
"""

from __future__ import annotations

import re
import typing
from collections.abc import Mapping
from typing import Any

import msgspec
import orjson

from gengate.dialects import xhuo
from gengate.dialects.links import Links
from gengate.domain.catalogue import ModelSpec
from gengate.domain.errors import BadRequest, GatewayError
from gengate.domain.states import FailCode, TaskState
from gengate.domain.task import Task

#: No `{code, message, data}` envelope: a success is the images response itself.
MESSAGE_FIELD: str | None = None
#: The header naming the task of an answer that is not its result (a 504, a failed task).
TASK_HEADER = "x-gengate-task-id"
MAX_N = 10

#: OpenAI's `type` by HTTP status; a used-up key is OpenAI's `insufficient_quota`.
_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    504: "timeout",
}
#: Status of a request whose task failed, by failCode (others: 500, which clients retry).
#: A refused prompt is OpenAI's 400; a canceled task is 409, and is not to be retried.
FAIL_STATUS: dict[str, int] = {
    FailCode.CONTENT_VIOLATION: 400,
    FailCode.INVALID_INPUT: 400,
    FailCode.TIMEOUT: 504,
    FailCode.CANCELED: 409,
}
#: Asked only to tune the picture: sent to a model that takes them, otherwise left out.
HINTS = frozenset(
    {
        "quality",
        "style",
        "user",
        "moderation",
        "safety_identifier",
        "output_compression",
        "input_fidelity",
        "complexity",
        "partial_images",
    }
)
#: Hints of OpenAI's API whose value is a number; every other hint is text. Checked even when
#: ignored, so a request OpenAI would refuse is refused here too.
_NUMBER_HINTS = frozenset({"output_compression", "partial_images"})
_BACKGROUNDS = ("auto", "opaque", "transparent")
_SIZE = re.compile(r"^([1-9][0-9]{0,4})x([1-9][0-9]{0,4})$")
#: A model input field as the client knows it (a validation message names the input's field).
_PARAMS = {"width": "size", "height": "size", "image_url": "image", "image_urls": "image", "mask_url": "mask"}
_INPUT_FIELD = re.compile(r"^input\.([A-Za-z_][A-Za-z0-9_]*)")
_FORMATS = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp", "image/gif": "gif"}


def invalid(message: str, param: str | None) -> BadRequest:
    """A 400 naming the request field at fault in `param`."""
    return BadRequest(message, extra={"param": param})


def param_of(error: GatewayError) -> str | None:
    """The request field an error concerns: the one it names, or the model input field its
    message starts with (`input.width: ...` is the client's `size`)."""
    named = error.extra.get("param")
    if isinstance(named, str):
        return named
    found = _INPUT_FIELD.match(error.message)
    if found is None:
        return None
    return _PARAMS.get(found.group(1), found.group(1))


def mode_of(spec: ModelSpec, mode: str) -> type[msgspec.Struct]:
    """The model's input struct for `mode`; a model without that mode cannot serve this route."""
    struct = spec.inputs.get(mode)
    if struct is None:
        raise invalid(f"Model '{spec.id}' has no {mode} mode (its modes: {', '.join(spec.modes)}).", "model")
    return struct


def task_input(
    fields: Mapping[str, Any], spec: ModelSpec, mode: str, *, form: bool = False
) -> dict[str, Any]:
    """The model input for a request's `fields` (those beyond `model`, `response_format` and the
    uploaded files), without `mode`. `form` values are text (multipart): numbers are read from it."""
    struct = mode_of(spec, mode)
    takes = set(struct.__struct_fields__)
    given = {name: value for name, value in fields.items() if value is not None and name != "stream"}
    if fields.get("stream") not in (None, False, "false"):
        raise invalid("Streaming is not supported by this gateway; leave `stream` out.", "stream")
    prompt = given.pop("prompt", None)
    if not isinstance(prompt, str) or not prompt:
        raise invalid("`prompt` is required: a non-empty string.", "prompt")
    value: dict[str, Any] = {"prompt": prompt}
    n = _count(given.pop("n", 1))
    if "n" in takes:
        value["n"] = n
    elif n != 1:
        raise invalid(f"Model '{spec.id}' makes one image per request; `n` must be 1.", "n")
    value |= _size(given.pop("size", "auto"), takes, spec.id)
    background = given.pop("background", "auto")
    if background not in _BACKGROUNDS:
        raise invalid(f"`background` must be one of: {', '.join(_BACKGROUNDS)}.", "background")
    if "background" in takes:
        value["background"] = background
    elif background == "transparent":
        raise invalid(f"Model '{spec.id}' cannot make a transparent background.", "background")
    for name, raw in given.items():
        if name in takes:
            value[name] = _form_value(struct, name, raw) if form else raw
        elif name not in HINTS:
            raise invalid(f"Model '{spec.id}' does not take `{name}`; leave it out.", name)
        else:
            _check_hint(name, raw, form)
    return value


def _check_hint(name: str, raw: Any, form: bool) -> None:
    """An ignored hint still has the type OpenAI's API gives it (a form sends text)."""
    if name in _NUMBER_HINTS:
        number = raw.strip() if form and isinstance(raw, str) else raw
        ok = (
            number.isdigit()
            if isinstance(number, str)
            else isinstance(number, int) and not isinstance(number, bool)
        )
        if not ok:
            raise invalid(f"`{name}` must be a whole number.", name)
    elif not isinstance(raw, str):
        raise invalid(f"`{name}` must be a string.", name)


def image_fields(spec: ModelSpec, urls: list[str], mask_url: str | None) -> dict[str, Any]:
    """The uploaded images (data URLs) as the model's image-to-image input takes them."""
    takes = set(mode_of(spec, "image-to-image").__struct_fields__)
    if len(urls) == 1 and "image_url" in takes:
        value: dict[str, Any] = {"image_url": urls[0]}
    elif "image_urls" in takes:
        value = {"image_urls": urls}
    else:
        raise invalid(f"Model '{spec.id}' takes one image; send one `image`.", "image")
    if mask_url is not None:
        if "mask_url" not in takes:
            raise invalid(f"Model '{spec.id}' does not take a `mask`; leave it out.", "mask")
        value["mask_url"] = mask_url
    return value


def _count(raw: Any) -> int:
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 2:
        raw = int(raw)
    if not isinstance(raw, int) or isinstance(raw, bool) or not 1 <= raw <= MAX_N:
        raise invalid(f"`n` must be an integer from 1 to {MAX_N}.", "n")
    return raw


def _size(raw: Any, takes: set[str], model: str) -> dict[str, Any]:
    """`WxH` as the model takes it: its own `size`, or `width` and `height`; `auto` leaves it
    to the model."""
    if raw == "auto":
        return {}
    found = _SIZE.match(raw) if isinstance(raw, str) else None
    if found is None:
        raise invalid("`size` must be `WIDTHxHEIGHT` in pixels (such as 1024x1024) or `auto`.", "size")
    if "size" in takes:
        return {"size": raw}
    if {"width", "height"} <= takes:
        return {"width": int(found.group(1)), "height": int(found.group(2))}
    raise invalid(f"Model '{model}' has one size; leave `size` out or set it to `auto`.", "size")


def _form_value(struct: type[msgspec.Struct], name: str, raw: Any) -> Any:
    """A multipart field's text as the type the model's field has (`"3"` for an int); left as
    it is when it is not one, so that validation names the field."""
    hint = typing.get_type_hints(struct, include_extras=True)[name]
    try:
        return msgspec.convert(raw, hint, strict=False)
    except msgspec.ValidationError:
        return raw


def images_body(task: Task, items: list[dict[str, Any]]) -> dict[str, Any]:
    """The images response: `created` (Unix s), `data`, and `size` and `output_format` where the
    task tells them."""
    body: dict[str, Any] = {"created": task.create_time // 1000, "data": items}
    value = task.input
    width, height = value.get("width"), value.get("height")
    if isinstance(width, int) and isinstance(height, int):
        body["size"] = f"{width}x{height}"
    elif isinstance(value.get("size"), str):
        body["size"] = value["size"]
    formats = {_FORMATS.get(file.content_type) for file in task.files}
    if len(formats) == 1 and None not in formats:
        body["output_format"] = formats.pop()
    return body


def url_items(task: Task, links: Links) -> list[dict[str, Any]]:
    return [{"url": url} for url in links.result_urls(task)]


def task_failed(task: Task) -> GatewayError:
    """A task that failed, as this door answers it: its failCode as `error.code`, the status
    :data:`FAIL_STATUS` gives, and the task named. Only a transient fault (500) is worth the
    client's automatic retry; the retry is a new task, the failed one was refunded."""
    error = xhuo.TaskFailed(task)
    status = FAIL_STATUS.get(error.code, 500)
    error.status = status  # type: ignore[misc]
    error.headers[TASK_HEADER] = task.id
    if status != 500:
        error.headers["x-should-retry"] = "false"
    return error


def callback_body(task: Task, links: Links) -> bytes:
    """OpenAI's images API has no callbacks; were one owed, it is the answer the request got."""
    if task.state is TaskState.SUCCESS:
        return orjson.dumps(images_body(task, url_items(task, links)))
    return orjson.dumps(error_envelope(task_failed(task), task.trace_id or ""))


def error_envelope(error: GatewayError, trace_id: str) -> dict[str, Any]:
    """`{"error": {message, type, param, code}, "trace_id"}`, plus what the error adds beside
    them (`task_id`); the official client reads `error` and raises by HTTP status."""
    extra = {name: value for name, value in error.extra.items() if name != "param"}
    kind = _TYPES.get(error.status, "server_error")
    if error.code == "used_up":
        kind = "insufficient_quota"
    return {
        "error": {"message": error.message, "type": kind, "param": param_of(error), "code": error.code},
        "trace_id": trace_id,
        **extra,
    }
