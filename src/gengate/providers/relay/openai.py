"""Relay to an OpenAI-style image service: `POST /v1/images/generations`, synchronous.

The answer carries the images at once: `{"data": [{"b64_json": ...} | {"url": ...}]}`; errors are
`{"error": {"message", "type", "code"}}` with the HTTP status. There is no task to follow, so a
canceled task just drops the request. `base_url` is the service's root (the path adds `/v1`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from gengate.domain.files import OutputFile
from gengate.providers.base import Provider, RunContext
from gengate.providers.relay.errors import failure_for_request, provider_fault
from gengate.providers.relay.follow import Submitted, until_canceled
from gengate.providers.relay.model import UpstreamModel
from gengate.providers.relay.upstream import RelayOptions, Upstream
from gengate.wire import error_from_response

GENERATIONS_PATH = "/v1/images/generations"
#: Input fields the images API takes by the same name.
_PASSED = ("n", "size", "quality", "style", "output_format", "negative_prompt", "seed")
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF8", "image/gif", ".gif"),
)


class OpenAIOptions(RelayOptions, kw_only=True, forbid_unknown_fields=True):
    modes: list[str] = msgspec.field(default_factory=lambda: ["text-to-image"])
    #: Asked of the service when set; gpt-image models always answer b64_json and refuse the field.
    response_format: Literal["b64_json", "url"] | None = None
    #: Sent with every request (`quality`, `background`, ...); the input's fields win.
    defaults: dict[str, Any] = msgspec.field(default_factory=dict)
    #: The images come inside the answer (base64): room for several large ones.
    max_answer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 64 << 20


def request_body(input: Mapping[str, Any], model: str, options: OpenAIOptions) -> dict[str, Any]:
    """The generations request for one task's input."""
    body: dict[str, Any] = {"model": model, **options.defaults}
    if input.get("prompt") is not None:
        body["prompt"] = input["prompt"]
    body |= {name: input[name] for name in _PASSED if input.get(name) is not None}
    if "size" not in body and input.get("width") and input.get("height"):
        body["size"] = f"{input['width']}x{input['height']}"
    if options.response_format is not None:
        body["response_format"] = options.response_format
    return body | dict(input.get("params") or {})


def _sniff(data: bytes) -> tuple[str, str]:
    for magic, content_type, suffix in _MAGIC:
        if data.startswith(magic):
            return content_type, suffix
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp", ".webp"
    return "image/png", ".png"


def _write_image(encoded: str, folder: Path, index: int) -> OutputFile:
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise provider_fault("an image in the answer is not valid base64") from exc
    content_type, suffix = _sniff(data)
    path = folder / f"{index}{suffix}"
    path.write_bytes(data)
    return OutputFile(path, content_type)


class OpenAIRelay(UpstreamModel):
    """A provider for one model of an OpenAI-style images API."""

    def __init__(self, upstream: Upstream, options: OpenAIOptions, model: str | None) -> None:
        super().__init__(upstream, model)
        self.options = options

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        up = self.upstream
        body = request_body(input, self.model or ctx.model, self.options)
        response = await until_canceled(ctx.cancel, up.request("POST", GENERATIONS_PATH, json=body))
        request_id = response.headers.get("x-request-id")
        if request_id:
            up.announce(ctx, Submitted(request_id, request_id))
        if not response.is_success:
            raise failure_for_request(error_from_response(response))
        try:
            items = response.json()["data"]
        except (ValueError, KeyError, TypeError) as exc:
            raise provider_fault("the answer has no `data` list") from exc
        if not isinstance(items, list) or not items:
            raise provider_fault("the answer holds no image")
        return await self._save(items, ctx)

    async def _save(self, items: list[Any], ctx: RunContext) -> list[OutputFile]:
        outputs = []
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                raise provider_fault("an image in the answer is not an object")
            if isinstance(item.get("b64_json"), str):
                # Decoding a large image is CPU and disk work: keep it off the event loop.
                outputs.append(await asyncio.to_thread(_write_image, item["b64_json"], ctx.output_dir, index))
            elif isinstance(item.get("url"), str):
                outputs.append(await self.upstream.download(item["url"], ctx.output_dir, index))
            else:
                raise provider_fault("an image in the answer has neither b64_json nor url")
        return outputs


def link(up: Upstream, model: str | None) -> Provider:
    """The provider sending `model` (None: the gateway's own model id) to this service."""
    assert isinstance(up.options, OpenAIOptions)
    return OpenAIRelay(up, up.options, model)
