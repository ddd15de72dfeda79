"""The OpenAI Images routes: `POST /v1/images/generations` (JSON) and `POST /v1/images/edits`
(multipart), so that the official `openai` client works with only its base URL changed.

Each request is one task of the key's, submitted as every door submits (credits, limits,
moderation, `Idempotency-Key`), then waited for up to the sync wait. Past it the answer is a
504 naming the task (message, `task_id`, the `x-gengate-task-id` header) with
`x-should-retry: false`: the client's automatic retries would each start a new task, while the
first one runs on and can be read through statusTask or recordInfo. Bodies and the mapping of
fields are :mod:`gengate.dialects.openai_images`'s.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from gengate.api.body import read_json_object
from gengate.api.openapi_parts import DocSpec, Fragment, errors, ok, operation, ref
from gengate.api.responses import JSONResponse
from gengate.api.routing import ApiRoutes, route
from gengate.api.trace import trace_id_of
from gengate.dialects import openai_images as dialect
from gengate.dialects.openai_images import TASK_HEADER, invalid
from gengate.domain.catalogue import ModelSpec
from gengate.domain.clock import now_ms
from gengate.domain.dialect import Dialect
from gengate.domain.errors import ApiError, ModelNotFound, Timeout, UsedUp
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.files.local import LocalFileStore
from gengate.net.bounded import ACCEPT_ENCODING, BodyError, aread_capped

GENERATIONS = "/v1/images/generations"
EDITS = "/v1/images/edits"
#: The most uploaded files one edit takes (images and a mask).
MAX_FILES = 17
#: The most bytes of one result read back for `b64_json` from a file store behind a URL.
MAX_RESULT_BYTES = 64 << 20
_RESPONSE_FORMATS = ("url", "b64_json")


@dataclass(frozen=True, slots=True)
class _Job:
    """What one request asks: the model, the mode, its input, the request as kept, the form of
    the answer (`url` or `b64_json`)."""

    spec: ModelSpec
    mode: str
    value: dict[str, Any]
    kept: dict[str, Any]
    response_format: str


class OpenAIImagesRoutes(ApiRoutes):
    @route(GENERATIONS, "POST")
    async def generations(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        body = await read_json_object(request, self.ctx.max_body_bytes)
        return await self._run(request, key, self._job(body, "text-to-image", body))

    @route(EDITS, "POST")
    async def edits(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            raise invalid("Send the edit as multipart/form-data, with the picture in `image`.", None)
        try:
            async with request.form(
                max_files=MAX_FILES, max_fields=64, max_part_size=self.ctx.max_body_bytes
            ) as form:
                fields: dict[str, Any] = {}
                uploads: dict[str, list[UploadFile]] = {"image": [], "mask": []}
                for name, item in form.multi_items():
                    target = name.removesuffix("[]")
                    if isinstance(item, UploadFile):
                        if target not in uploads:
                            raise invalid(f"`{name}` takes no file.", target)
                        uploads[target].append(item)
                    elif target in uploads:
                        raise invalid(f"`{target}` must be a file.", target)
                    elif name in fields:
                        raise invalid(f"`{name}` is given more than once.", name)
                    else:
                        fields[name] = item
                images = [await _data_url(upload, "image") for upload in uploads["image"]]
                masks = [await _data_url(upload, "mask") for upload in uploads["mask"]]
        except HTTPException as exc:  # Starlette's answer to a malformed multipart body
            raise invalid(f"The multipart body could not be read: {exc.detail}", None) from None
        if not images:
            raise invalid("`image` is required: the picture to edit, as a file.", "image")
        if len(masks) > 1:
            raise invalid("Send at most one `mask`.", "mask")
        # The request as kept (and compared for Idempotency-Key): the fields, and each file by digest.
        kept = {**fields, "image": [meta for _, meta in images], "mask": [meta for _, meta in masks]}
        job = self._job(fields, "image-to-image", kept, form=True)
        job.value.update(
            dialect.image_fields(job.spec, [url for url, _ in images], masks[0][0] if masks else None)
        )
        return await self._run(request, key, job)

    def _job(self, fields: dict[str, Any], mode: str, kept: dict[str, Any], *, form: bool = False) -> _Job:
        """The model, its input for `mode` and the answer's form, from a request's fields."""
        model = fields.get("model")
        if not isinstance(model, str) or not model:
            raise invalid("`model` is required: the id of one of this gateway's models.", "model")
        try:
            spec = self.ctx.catalogue.get(model)
        except ModelNotFound as exc:
            exc.extra["param"] = "model"
            raise
        # Absent or null (as OpenAI's API takes it, and its SDK sends for None): `url`. Anything
        # else must be one of the two, the empty string included.
        response_format = fields.get("response_format")
        if response_format is None:
            response_format = "url"
        if response_format not in _RESPONSE_FORMATS:
            raise invalid("`response_format` must be `url` or `b64_json`.", "response_format")
        rest = {name: value for name, value in fields.items() if name not in ("model", "response_format")}
        return _Job(spec, mode, dialect.task_input(rest, spec, mode, form=form), kept, response_format)

    async def _run(self, request: Request, key: ApiKey, job: _Job) -> Response:
        ctx = self.ctx
        try:
            task = await ctx.tasks.submit(
                key,
                job.spec.id,
                {"mode": job.mode, **job.value},
                request=job.kept,
                request_type="sync",
                trace_id=trace_id_of(request.scope),
                dialect=Dialect.OPENAI,
                idempotency_key=request.headers.get("idempotency-key"),
            )
        except UsedUp as exc:  # OpenAI's 429 `insufficient_quota`, which no retry cures
            raise UsedUp(exc.message, status=429, headers={"x-should-retry": "false"}) from None
        task = await ctx.tasks.wait_until_done(task, ctx.sync_wait_s)
        if task.state is TaskState.FAILED:
            raise dialect.task_failed(task)
        if task.state is not TaskState.SUCCESS:
            raise Timeout(
                f"Task {task.id} did not finish within {ctx.sync_wait_s:g} s; it goes on running: "
                f"read it with GET /api/v1/statusTask/{task.model}?taskId={task.id}.",
                headers={TASK_HEADER: task.id, "x-should-retry": "false"},
                extra={"task_id": task.id},
            )
        if job.response_format == "url":
            items = dialect.url_items(task, ctx.links)
        else:
            items = [{"b64_json": base64.b64encode(data).decode()} for data in await self._contents(task)]
        return JSONResponse(dialect.images_body(task, items), headers={TASK_HEADER: task.id})

    async def _contents(self, task: Task) -> list[bytes]:
        """The bytes of a finished task's files: from the local folder, or through their URLs."""
        urls = self.ctx.links.result_urls(task)
        files = self.ctx.files
        if isinstance(files, LocalFileStore):  # disk reads: off the event loop
            return await asyncio.to_thread(_local_contents, files, task, urls)
        contents = []
        async with httpx.AsyncClient(timeout=60, trust_env=False) as client:
            for url in urls:
                try:
                    async with client.stream(
                        "GET", url, headers={"accept-encoding": ACCEPT_ENCODING}
                    ) as answer:
                        answer.raise_for_status()
                        contents.append(await aread_capped(answer, MAX_RESULT_BYTES))
                except (httpx.HTTPError, BodyError) as exc:
                    raise ApiError(
                        f"Task {task.id} succeeded but its result could not be read back ({exc}); "
                        "ask for `response_format` `url`.",
                        headers={TASK_HEADER: task.id, "x-should-retry": "false"},
                    ) from None
        return contents


def _local_contents(files: LocalFileStore, task: Task, urls: list[str]) -> list[bytes]:
    """The results of the local store, found as its download route finds them (by signed URL)."""
    contents = []
    for file, url in zip(task.files, urls, strict=True):
        query = parse_qs(urlsplit(url).query)
        found, _ = files.resolve(task.id, file.name, query["expires"][0], query["signature"][0], now_ms())
        contents.append(found if isinstance(found, bytes) else found.read_bytes())
    return contents


async def _data_url(upload: UploadFile, field: str) -> tuple[str, dict[str, Any]]:
    """An uploaded picture as a `data:` URL a model input takes, and what the request keeps of it."""
    data = await upload.read()
    try:
        with Image.open(io.BytesIO(data)) as picture:
            kind = picture.format
    except (UnidentifiedImageError, OSError, ValueError):
        kind = None
    mime = Image.MIME.get(kind or "")
    if mime is None or not mime.startswith("image/"):
        raise invalid(f"`{field}` is not a picture this gateway can read (PNG, JPEG, WebP, ...).", field)
    meta = {"filename": upload.filename, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return f"data:{mime};base64,{base64.b64encode(data).decode()}", meta


OPENAI_ERROR = {
    "type": "object",
    "required": ["error", "trace_id"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string", "description": "OpenAI's class of error."},
                "param": {"type": ["string", "null"], "description": "The request field at fault."},
                "code": {
                    "type": "string",
                    "description": "The gateway's error code, or a failed task's failCode.",
                },
            },
        },
        "trace_id": {"type": "string", "format": "uuid"},
        "task_id": {
            "type": "string",
            "description": "On 504 and on a failed task: the task, to read elsewhere.",
        },
    },
}

IMAGES_RESPONSE = {
    "type": "object",
    "required": ["created", "data"],
    "properties": {
        "created": {"type": "integer", "description": "Unix seconds."},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "format": "uri", "description": "Signed, expiring."},
                    "b64_json": {"type": "string", "contentEncoding": "base64"},
                },
            },
        },
        "size": {"type": "string", "examples": ["1024x1024"]},
        "output_format": {"type": "string", "enum": ["png", "jpeg", "webp", "gif"]},
    },
}

_SIZE_SCHEMA = {
    "type": "string",
    "pattern": r"^([1-9][0-9]{0,4}x[1-9][0-9]{0,4}|auto)$",
    "description": "`WIDTHxHEIGHT` in pixels, or `auto` (the model's default).",
}


def _fields(models: list[str]) -> dict[str, Any]:
    """The fields both routes take; `n` and `size` go to the model's inputs, hints to a model
    that takes them."""
    hint = {"type": "string", "description": "Sent to a model that takes it, ignored otherwise."}
    return {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 4000},
        "model": {"type": "string", "enum": models} if models else {"type": "string"},
        "n": {"type": "integer", "minimum": 1, "maximum": dialect.MAX_N, "default": 1},
        "size": _SIZE_SCHEMA,
        "response_format": {
            "type": ["string", "null"],
            "enum": [*_RESPONSE_FORMATS, None],
            "default": "url",
            "description": "null: `url`.",
        },
        "quality": hint,
        "style": hint,
        "user": hint,
        "background": {"type": "string", "enum": ["auto", "opaque", "transparent"]},
        "output_format": {"type": "string", "description": "Only for a model that takes it."},
    }


def openapi(spec: DocSpec) -> Fragment:
    """The two routes, their bodies (the models offered are those with the route's mode) and
    OpenAI's error body."""

    def models(mode: str) -> list[str]:
        return [model.id for model in spec.catalogue if mode in model.inputs]

    answers = ok(ref("OpenAIImagesResponse")) | errors(
        400, 401, 403, 404, 409, 413, 429, 500, 503, 504, schema="OpenAIError"
    )
    about = (
        "Synchronous: answers once the task ends. Past the sync wait, 504 names the task "
        "(`task_id`, header `x-gengate-task-id`), which goes on and is read through the other doors. "
        "Fields of the model's own input (`seed`, ...) may be added; others are refused with `param`."
    )
    generate = {
        "type": "object",
        "required": ["prompt", "model"],
        "properties": _fields(models("text-to-image")),
        "additionalProperties": False,
    }
    edit_fields = _fields(models("image-to-image"))
    edit = {
        "type": "object",
        "required": ["image", "prompt", "model"],
        "properties": {
            "image": {"type": "string", "format": "binary", "description": "The picture to edit."},
            "mask": {"type": "string", "format": "binary", "description": "For a model that takes one."},
            **edit_fields,
        },
        "additionalProperties": False,
    }
    generations_op = operation("Generate images (OpenAI Images)", answers, description=about, body=generate)
    edits_op = operation("Edit an image (OpenAI Images)", answers, description=about)
    edits_op["requestBody"] = {"required": True, "content": {"multipart/form-data": {"schema": edit}}}
    paths = {GENERATIONS: {"post": generations_op}, EDITS: {"post": edits_op}}
    return Fragment(paths, {"OpenAIError": OPENAI_ERROR, "OpenAIImagesResponse": IMAGES_RESPONSE})
