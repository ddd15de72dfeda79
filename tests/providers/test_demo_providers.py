"""The demo models: seeded PNGs, echo, pretend work with progress, cancel and failure."""

from __future__ import annotations

import asyncio
import io
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from PIL import Image

from gengate.domain.files import OutputFile
from gengate.domain.inputs import EchoInput, TextToImageInput
from gengate.providers.base import Provider, ProviderFailure, RunContext
from gengate.providers.demo import DemoEchoProvider, DemoImageProvider, demo_providers, wrap


def content(output: OutputFile) -> bytes:
    """The bytes of an output, made in memory or written to the output folder."""
    return output.data if output.data is not None else output.path.read_bytes()


def _context(tmp_path: Path, name: str = "out") -> tuple[RunContext, list[int]]:
    progress: list[int] = []
    output_dir = tmp_path / name
    output_dir.mkdir()
    ctx = RunContext(
        task_id="task_x", model="demo", mode="m", output_dir=output_dir, on_progress=progress.append
    )
    return ctx, progress


def _image_input(**fields: Any) -> dict[str, Any]:
    return {"mode": "text-to-image", "prompt": "a red fox in the snow", **fields}


async def _run_image(tmp_path: Path, name: str, **fields: Any) -> list[bytes]:
    ctx, _ = _context(tmp_path, name)
    outputs = await DemoImageProvider().run(_image_input(**fields), ctx)
    return [content(output) for output in outputs]


def test_registry() -> None:
    providers = demo_providers()
    assert set(providers) == {"demo-image", "demo-echo"}
    assert providers["demo-image"].inputs == {"text-to-image": TextToImageInput}
    assert providers["demo-echo"].inputs == {"echo": EchoInput}


async def test_images_are_pngs_of_the_requested_size(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path)
    outputs = await DemoImageProvider().run(_image_input(width=320, height=200, n=3, seed=1), ctx)
    assert [(o.path.name, o.content_type) for o in outputs] == [(f"{i}.png", "image/png") for i in range(3)]
    for output in outputs:
        assert output.path.parent == ctx.output_dir
        with Image.open(io.BytesIO(content(output))) as image:
            assert image.format == "PNG"
            assert image.size == (320, 200)
            image.verify()
    contents = {content(output) for output in outputs}
    assert len(contents) == 3


async def test_same_seed_same_bytes(tmp_path: Path) -> None:
    first = await _run_image(tmp_path, "a", seed=1234, n=2, width=64, height=48)
    second = await _run_image(tmp_path, "b", seed=1234, n=2, width=64, height=48)
    assert first == second


async def test_image_i_uses_seed_plus_i(tmp_path: Path) -> None:
    pair = await _run_image(tmp_path, "a", seed=10, n=2, width=64, height=64)
    single = await _run_image(tmp_path, "b", seed=11, n=1, width=64, height=64)
    assert pair[1] == single[0]


async def test_different_seeds_or_prompts_differ(tmp_path: Path) -> None:
    base = await _run_image(tmp_path, "a", seed=1, width=64, height=64)
    other_seed = await _run_image(tmp_path, "b", seed=2, width=64, height=64)
    other_prompt = await _run_image(tmp_path, "c", seed=1, width=64, height=64, prompt="a blue whale")
    assert base != other_seed
    assert base != other_prompt


async def test_no_seed_is_random(tmp_path: Path) -> None:
    first = await _run_image(tmp_path, "a", width=32, height=32)
    second = await _run_image(tmp_path, "b", width=32, height=32)
    assert first != second


@pytest.mark.parametrize(("width", "height"), [(16, 16), (2048, 16), (16, 2048)])
async def test_extreme_sizes_and_long_prompt(tmp_path: Path, width: int, height: int) -> None:
    ctx, _ = _context(tmp_path)
    prompt = "x" * 300 + " lorem ipsum" * 300
    (output,) = await DemoImageProvider().run(_image_input(width=width, height=height, prompt=prompt), ctx)
    with Image.open(io.BytesIO(content(output))) as image:
        assert image.size == (width, height)


def test_wrap() -> None:
    def measure(text: str) -> float:
        return len(text)

    assert wrap("aa bb cc", measure, 5) == ["aa bb", "cc"]
    assert wrap("abcdefgh ij", measure, 3) == ["abc", "def", "gh", "ij"]
    assert wrap("one\n\ntwo", measure, 10) == ["one", "", "two"]
    assert wrap("", measure, 10) == [""]
    assert wrap("abc", measure, 0) == ["a", "b", "c"]


async def test_echo_writes_the_input(tmp_path: Path) -> None:
    ctx, progress = _context(tmp_path)
    input = {"mode": "echo", "prompt": "hi", "data": {"a": [1, 2.5, None, "é"]}, "duration_ms": 0}
    outputs = await DemoEchoProvider().run(input, ctx)
    assert [(o.path, o.content_type) for o in outputs] == [
        (ctx.output_dir / "result.json", "application/json")
    ]
    assert orjson.loads(content(outputs[0])) == input
    assert progress == []


async def test_progress_rises_to_100(tmp_path: Path) -> None:
    ctx, progress = _context(tmp_path)
    started = time.monotonic()
    await DemoEchoProvider().run({"mode": "echo", "duration_ms": 200}, ctx)
    elapsed = time.monotonic() - started
    assert 0.19 <= elapsed < 2
    assert progress == sorted(progress)
    assert len(progress) >= 2
    assert progress[-1] == 100


async def test_image_progress(tmp_path: Path) -> None:
    ctx, progress = _context(tmp_path)
    await DemoImageProvider().run(_image_input(width=16, height=16, duration_ms=20), ctx)
    assert progress[-1] == 100


@pytest.mark.parametrize(
    ("provider", "input"),
    [
        (DemoImageProvider(), _image_input(duration_ms=60_000)),
        (DemoEchoProvider(), {"mode": "echo", "duration_ms": 60_000}),
    ],
)
async def test_cancel_stops_promptly(tmp_path: Path, provider: Provider, input: dict[str, Any]) -> None:
    ctx, progress = _context(tmp_path)
    task = asyncio.create_task(provider.run(input, ctx))
    await asyncio.sleep(0.05)
    canceled_at = time.monotonic()
    ctx.cancel.set()
    with pytest.raises(ProviderFailure) as failure:
        await task
    assert time.monotonic() - canceled_at < 0.5
    assert failure.value.fail_code == "CANCELED"
    assert failure.value.message == "Task canceled."
    assert not failure.value.transient
    assert all(p < 100 for p in progress)
    assert list(ctx.output_dir.iterdir()) == []


async def test_canceled_before_start(tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path)
    ctx.cancel.set()
    with pytest.raises(ProviderFailure, match="canceled"):
        await DemoEchoProvider().run({"mode": "echo"}, ctx)


@pytest.mark.parametrize("duration_ms", [0, 30])
async def test_fail_code(tmp_path: Path, duration_ms: int) -> None:
    cases: list[tuple[Provider, dict[str, Any]]] = [
        (DemoImageProvider(), _image_input(fail_code="NSFW", duration_ms=duration_ms)),
        (DemoEchoProvider(), {"mode": "echo", "fail_code": "NSFW", "duration_ms": duration_ms}),
    ]
    for provider, input in cases:
        ctx, progress = _context(tmp_path, type(provider).__name__)
        with pytest.raises(ProviderFailure) as failure:
            await provider.run(input, ctx)
        assert failure.value.fail_code == "NSFW"
        assert failure.value.message == "Demo failure requested: NSFW"
        assert list(ctx.output_dir.iterdir()) == []
        assert progress[-1:] == ([100] if duration_ms else [])


async def test_zero_duration_does_not_sleep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_sleep(*_args: object) -> None:
        raise AssertionError("slept")

    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    monkeypatch.setattr(asyncio, "timeout_at", no_sleep)
    ctx, _ = _context(tmp_path)
    await DemoEchoProvider().run({"mode": "echo", "duration_ms": 0}, ctx)
