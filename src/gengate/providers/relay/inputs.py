"""What a relayed model accepts: the common generation fields, handed to the upstream as given.

The upstream validates its own input; the gateway only checks types and bounds, so that a
typo is a 400 naming the field instead of a task that fails upstream. Fields a client did not
send are left out (`omit_defaults`), so the upstream's own defaults apply; `params` carries
anything else the upstream takes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

Text = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
Short = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Url = Annotated[str, msgspec.Meta(min_length=1, max_length=8 << 20, description="http(s) or data URL.")]
Side = Annotated[int, msgspec.Meta(ge=16, le=8192, description="Pixels.")]


class RelayInput(msgspec.Struct, kw_only=True, omit_defaults=True, forbid_unknown_fields=True):
    """Fields every relayed mode may carry; each is sent only when given."""

    negative_prompt: Text | None = None
    image_url: Url | None = None
    image_urls: Annotated[list[Url], msgspec.Meta(max_length=16)] | None = None
    mask_url: Url | None = None
    aspect_ratio: Short | None = None
    resolution: Short | None = None
    size: Short | None = None
    width: Side | None = None
    height: Side | None = None
    n: Annotated[int, msgspec.Meta(ge=1, le=10, description="Number of outputs.")] | None = None
    seed: Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)] | None = None
    steps: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None
    guidance_scale: Annotated[float, msgspec.Meta(ge=0, le=100)] | None = None
    strength: Annotated[float, msgspec.Meta(ge=0, le=1)] | None = None
    duration: Annotated[float, msgspec.Meta(gt=0, le=600, description="Seconds of video.")] | None = None
    fps: Annotated[int, msgspec.Meta(ge=1, le=120)] | None = None
    output_format: Short | None = None
    quality: Short | None = None
    style: Short | None = None
    #: Read by a gengate upstream's demo models: how long to work, and a failure to report.
    duration_ms: Annotated[int, msgspec.Meta(ge=0, le=600_000)] | None = None
    fail_code: Annotated[str, msgspec.Meta(pattern=r"^[A-Z][A-Z0-9_]{0,63}$")] | None = None
    fail_attempts: Annotated[int, msgspec.Meta(ge=0, le=10)] | None = None
    params: (
        Annotated[dict[str, Any], msgspec.Meta(description="More fields for the upstream, sent as they are.")]
        | None
    ) = None


class RelayTextToImageInput(RelayInput, kw_only=True):
    """Mode `text-to-image` of a relayed model."""

    mode: Literal["text-to-image"] = "text-to-image"
    prompt: Text


class RelayImageToImageInput(RelayInput, kw_only=True):
    """Mode `image-to-image` of a relayed model: the image in `image_url` or `image_urls`."""

    mode: Literal["image-to-image"] = "image-to-image"
    prompt: Text | None = None


class RelayTextToVideoInput(RelayInput, kw_only=True):
    """Mode `text-to-video` of a relayed model."""

    mode: Literal["text-to-video"] = "text-to-video"
    prompt: Text


class RelayImageToVideoInput(RelayInput, kw_only=True):
    """Mode `image-to-video` of a relayed model: the image in `image_url` or `image_urls`."""

    mode: Literal["image-to-video"] = "image-to-video"
    prompt: Text | None = None


RELAY_INPUTS: Mapping[str, type[msgspec.Struct]] = {
    "text-to-image": RelayTextToImageInput,
    "image-to-image": RelayImageToImageInput,
    "text-to-video": RelayTextToVideoInput,
    "image-to-video": RelayImageToVideoInput,
}


def relay_inputs(modes: list[str]) -> dict[str, type[msgspec.Struct]]:
    """The input structs of `modes`, in that order; `ValueError` names a mode no relay knows."""
    unknown = [mode for mode in modes if mode not in RELAY_INPUTS]
    if unknown:
        raise ValueError(f"unknown modes {', '.join(unknown)}; relays know {', '.join(RELAY_INPUTS)}")
    return {mode: RELAY_INPUTS[mode] for mode in modes}


def upstream_input(input: Mapping[str, Any], mode: str) -> dict[str, Any]:
    """The input as the upstream gets it: `mode` first, `params` merged in."""
    fields = {name: value for name, value in input.items() if name not in ("mode", "params")}
    return {"mode": mode, **fields, **(input.get("params") or {})}
