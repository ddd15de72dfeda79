"""Input schemas of the built-in modes, as msgspec structs.

A model declares, per mode, the struct its input must convert to; conversion checks types,
ranges and unknown fields, and fills defaults, so providers receive clean input.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

Prompt = Annotated[str, msgspec.Meta(min_length=1, max_length=4000, description="What to generate.")]
DurationMs = Annotated[
    int,
    msgspec.Meta(ge=0, le=600_000, description="Demo only: pretend to work this long, reporting progress."),
]
DemoFailCode = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^[A-Z][A-Z0-9_]{0,63}$",
        description="Demo only: fail the task with this failCode after `duration_ms`.",
    ),
]
Side = Annotated[int, msgspec.Meta(ge=16, le=2048, description="Pixels.")]
FailAttempts = Annotated[
    int,
    msgspec.Meta(ge=0, le=10, description="Demo only: fail the first N attempts with a transient error."),
]


class TextToImageInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Input of mode `text-to-image`."""

    mode: Literal["text-to-image"] = "text-to-image"
    prompt: Prompt
    width: Side = 512
    height: Side = 512
    n: Annotated[int, msgspec.Meta(ge=1, le=4, description="Number of images.")] = 1
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    duration_ms: DurationMs = 0
    fail_code: DemoFailCode | None = None
    fail_attempts: FailAttempts = 0


ImageUrl = Annotated[
    str,
    msgspec.Meta(
        pattern=r"^(https?://|data:image/[a-z0-9.+-]+;base64,)",
        description="The image to start from: an http(s) URL, or a `data:image/...;base64,` URL.",
    ),
]


class ImageToImageInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Input of mode `image-to-image`: a prompt applied to an image, by URL or inline (data URL)."""

    mode: Literal["image-to-image"] = "image-to-image"
    prompt: Prompt
    image_url: ImageUrl
    strength: Annotated[
        float, msgspec.Meta(gt=0, le=1, description="How far from the image to go: 0 keeps it, 1 ignores it.")
    ] = 0.8
    width: Annotated[Side, msgspec.Meta(description="Pixels; default: the image's width.")] | None = None
    height: Annotated[Side, msgspec.Meta(description="Pixels; default: the image's height.")] | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=4, description="Number of images.")] = 1
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None


class EchoInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Input of mode `echo`: returned as a JSON file, no work done."""

    mode: Literal["echo"] = "echo"
    prompt: Annotated[str, msgspec.Meta(max_length=4000)] | None = None
    data: Any = None
    duration_ms: DurationMs = 0
    fail_code: DemoFailCode | None = None
    fail_attempts: FailAttempts = 0


def input_json_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    return msgspec.json.schema(struct)
