"""Built-in demo models, needing nothing beyond Pillow: try the gateway, test it, benchmark it.

`demo-image` draws pictures from the prompt and the seed; `demo-echo` returns its input. Both
can pretend to work (`duration_ms`, with progress and cancel) and fail on request
(`fail_code`), so every task path can be exercised without a real model.
"""

from __future__ import annotations

import asyncio
import io
import random
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import msgspec
import orjson
from PIL import Image, ImageDraw, ImageFont

from gengate.domain.files import OutputFile
from gengate.domain.inputs import EchoInput, TextToImageInput
from gengate.providers.base import Provider, ProviderFailure, RunContext

#: Pretend work is split into this many steps, each followed by a progress report.
PROGRESS_STEPS = 10
_MAX_SEED = 2**63 - 1


def _canceled() -> ProviderFailure:
    return ProviderFailure("CANCELED", "Task canceled.")


async def pretend_work(
    ctx: RunContext, duration_ms: int, fail_code: str | None, fail_attempts: int = 0
) -> None:
    """Spend `duration_ms` in steps, reporting progress, then fail if `fail_code` asks to, or
    transiently while this is one of the first `fail_attempts` attempts.

    Each step waits on the cancel event rather than sleeping, so a cancel ends the task at
    once instead of at the next step. Deadlines are absolute so steps do not drift.
    """
    if ctx.cancel.is_set():
        raise _canceled()
    if duration_ms > 0:
        loop = asyncio.get_running_loop()
        start = loop.time()
        for step in range(1, PROGRESS_STEPS + 1):
            try:
                async with asyncio.timeout_at(start + duration_ms / 1000 * step / PROGRESS_STEPS):
                    await ctx.cancel.wait()
            except TimeoutError:
                ctx.progress(100 * step / PROGRESS_STEPS)
                ctx.log(f"step {step}/{PROGRESS_STEPS}")
            else:
                raise _canceled()
    if ctx.attempt <= fail_attempts:
        raise ProviderFailure(
            "PROVIDER_ERROR", f"Demo transient failure on attempt {ctx.attempt}.", transient=True
        )
    if fail_code is not None:
        raise ProviderFailure(fail_code, f"Demo failure requested: {fail_code}")


class DemoImageProvider:
    """Mode `text-to-image`: `n` PNGs of a seeded gradient and shapes, with the prompt on top."""

    inputs: Mapping[str, type[msgspec.Struct]] = {"text-to-image": TextToImageInput}
    #: Its PNGs are made in memory: no staging folder per run.
    writes_files = False

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        params = msgspec.convert(input, TextToImageInput)
        await pretend_work(ctx, params.duration_ms, params.fail_code, params.fail_attempts)
        seed = secrets.randbelow(_MAX_SEED + 1) if params.seed is None else params.seed
        ctx.log(f"drawing {params.n} image(s) of {params.width}x{params.height}, seed {seed}")
        outputs = []
        for i in range(params.n):
            if ctx.cancel.is_set():
                raise _canceled()
            # Drawing and PNG encoding of a large image is CPU work: keep it off the event loop.
            png = await asyncio.to_thread(render_png, params.prompt, params.width, params.height, seed + i)
            outputs.append(OutputFile(ctx.output_dir / f"{i}.png", "image/png", png))
        return outputs


def render_png(prompt: str, width: int, height: int, seed: int) -> bytes:
    """The PNG for one image; the same arguments give the same bytes."""
    rng = random.Random(seed)  # noqa: S311 - pictures, not secrets; must be reproducible
    size = (width, height)
    mask = Image.linear_gradient("L").rotate(rng.choice((0, 90, 180, 270))).resize(size)
    image = Image.composite(Image.new("RGB", size, _colour(rng)), Image.new("RGB", size, _colour(rng)), mask)
    draw = ImageDraw.Draw(image)
    for _ in range(rng.randint(3, 6)):
        x0, x1 = sorted(rng.randrange(width) for _ in range(2))
        y0, y1 = sorted(rng.randrange(height) for _ in range(2))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=_colour(rng), outline=_colour(rng), width=max(1, width // 128))
    _draw_prompt(draw, prompt, width, height)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _colour(rng: random.Random) -> tuple[int, int, int]:
    return rng.randrange(256), rng.randrange(256), rng.randrange(256)


def _draw_prompt(draw: ImageDraw.ImageDraw, prompt: str, width: int, height: int) -> None:
    """The prompt, wrapped to the width, outlined so it reads on any background; lines that
    do not fit the height are dropped."""
    font_size = max(8, min(width, height) // 16)
    font = ImageFont.load_default(size=font_size)
    margin = max(2, width // 32)
    line_height = font_size * 5 // 4
    stroke = max(1, font_size // 12)
    y = margin
    for line in wrap(prompt, font.getlength, width - 2 * margin):
        if y + line_height > height - margin:
            break
        draw.text((margin, y), line, font=font, fill="white", stroke_width=stroke, stroke_fill="black")
        y += line_height


def wrap(text: str, measure: Callable[[str], float], max_width: float) -> list[str]:
    """Greedy word wrap by measured width; a word wider than a line is cut by characters."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split():
            candidate = f"{line} {word}" if line else word
            if measure(candidate) <= max_width:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:
                if line and measure(line + char) > max_width:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


class DemoEchoProvider:
    """Mode `echo`: gives the input back as `result.json`. The zero-cost model for benchmarks,
    so it skips struct conversion and makes its file in memory."""

    inputs: Mapping[str, type[msgspec.Struct]] = {"echo": EchoInput}
    writes_files = False

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        await pretend_work(
            ctx, input.get("duration_ms") or 0, input.get("fail_code"), input.get("fail_attempts") or 0
        )
        return (OutputFile(ctx.output_dir / "result.json", "application/json", orjson.dumps(input)),)


def demo_providers() -> dict[str, Provider]:
    """The built-in models by name."""
    return {"demo-image": DemoImageProvider(), "demo-echo": DemoEchoProvider()}
