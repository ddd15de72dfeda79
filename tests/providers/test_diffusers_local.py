"""The local diffusers provider, on a tiny Stable Diffusion pipeline with random weights that the
test builds and saves itself: nothing is downloaded, everything runs on the CPU in seconds."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from gengate.domain.inputs import ImageToImageInput, TextToImageInput
from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.diffusers_local import STEPS_PERCENT, DiffusersProvider, build_diffusers

# Nothing may come from a hub: the pipeline is a folder on disk.
os.environ["HF_HUB_OFFLINE"] = "1"

if os.environ.get("CI", "").lower() in {"true", "1", "yes"}:
    try:
        import diffusers
        import torch
        import transformers
    except ImportError as exc:  # CI installs the extra (see the Makefile): never skip there
        pytest.fail(
            f"CI=true and the diffusers extra is missing ({exc}); pip install -e '.[diffusers]'", False
        )
else:
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    transformers = pytest.importorskip("transformers")

SIDE = 32
#: More steps than a run gets through before the cancel it triggers at its first step is seen.
MANY_STEPS = 500
WORDS = ("a", "red", "blue", "green", "cat", "dog", "fox", "on", "in", "the", "snow")


def _tiny_tokenizer(folder: Path) -> Any:
    """A CLIP tokenizer over a vocabulary of a few words and the letters; no merges needed."""
    folder.mkdir()
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for token in [f"{word}</w>" for word in WORDS] + [
        c + end for c in "abcdefghijklmnopqrstuvwxyz" for end in ("", "</w>")
    ]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return transformers.CLIPTokenizer.from_pretrained(folder, model_max_length=16)


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Stable Diffusion pipeline a few kilobytes big, saved with `save_pretrained`."""
    root = tmp_path_factory.mktemp("tiny-sd")
    tokenizer = _tiny_tokenizer(root / "tokenizer-src")
    torch.manual_seed(0)
    unet = diffusers.UNet2DConditionModel(
        block_out_channels=(8, 16),
        layers_per_block=1,
        sample_size=SIDE // 2,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=16,
        attention_head_dim=2,
        norm_num_groups=4,
    )
    vae = diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=SIDE,
    )
    text_encoder = transformers.CLIPTextModel(
        transformers.CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=16,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    scheduler = diffusers.DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False, steps_offset=1
    )
    pipeline = diffusers.StableDiffusionPipeline(
        unet=unet,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    saved = root / "saved"
    pipeline.save_pretrained(saved)
    return saved


def _provider(pipeline_dir: Path, **options: Any) -> DiffusersProvider:
    provider = build_diffusers(
        "tiny", {"kind": "diffusers", "path": str(pipeline_dir), "steps": 2, **options}
    )
    assert isinstance(provider, DiffusersProvider)
    return provider


def _context(
    tmp_path: Path, name: str, mode: str = "text-to-image", **kwargs: Any
) -> tuple[RunContext, list[int]]:
    progress: list[int] = []
    output_dir = tmp_path / name
    output_dir.mkdir()
    ctx = RunContext(
        task_id=f"task_{name}",
        model="sd-tiny",
        mode=mode,
        output_dir=output_dir,
        on_progress=progress.append,
        **kwargs,
    )
    return ctx, progress


def _png(size: tuple[int, int], colour: str = "orange") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, "PNG")
    return buffer.getvalue()


def _data_url(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode()


def _size_of(path: Path) -> tuple[int, int]:
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_declares_both_modes(pipeline_dir: Path) -> None:
    provider = _provider(pipeline_dir)
    assert provider.inputs == {"text-to-image": TextToImageInput, "image-to-image": ImageToImageInput}


def test_configuring_imports_nothing_heavy(pipeline_dir: Path) -> None:
    """The embedded gateway may name a diffusers provider without paying for torch."""
    code = (
        "import sys\n"
        "from gengate.providers.diffusers_local import build_diffusers\n"
        f"build_diffusers('tiny', {{'path': {str(pipeline_dir)!r}}})\n"
        "heavy = sorted({'torch', 'diffusers', 'transformers'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.parametrize(
    ("options", "complaint"),
    [
        ({}, "path"),
        ({"path": "/x", "devcie": "cpu"}, "devcie"),
        ({"path": "/x", "steps": 0}, "steps"),
        ({"path": "/x", "dtype": "float8"}, "dtype"),
        ({"path": "/x", "image_allow": ["not-a-network"]}, "not-a-network"),
    ],
)
def test_bad_options_are_named(options: dict[str, Any], complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint) as caught:
        build_diffusers("local", options)
    assert str(caught.value).startswith("providers.local: ")


async def test_text_to_image_writes_pngs_and_reports_progress(pipeline_dir: Path, tmp_path: Path) -> None:
    provider = _provider(pipeline_dir)
    ctx, progress = _context(tmp_path, "t2i")
    outputs = await provider.run(
        {"mode": "text-to-image", "prompt": "a red fox", "width": SIDE, "height": SIDE, "n": 2}, ctx
    )
    assert [(o.path.name, o.content_type) for o in outputs] == [
        ("0.png", "image/png"),
        ("1.png", "image/png"),
    ]
    assert all(o.path.parent == ctx.output_dir for o in outputs)
    assert [_size_of(o.path) for o in outputs] == [(SIDE, SIDE)] * 2
    # One report per denoising step, then 100 once the files are written.
    assert progress == [STEPS_PERCENT // 2, STEPS_PERCENT, 100]
    assert provider.load_count == 1


async def test_same_seed_same_picture_and_any_size(pipeline_dir: Path, tmp_path: Path) -> None:
    provider = _provider(pipeline_dir)
    pictures = []
    for name in ("first", "second"):
        ctx, _ = _context(tmp_path, name)
        (output,) = await provider.run({"prompt": "a blue dog", "width": 40, "height": 24, "seed": 7}, ctx)
        assert _size_of(output.path) == (40, 24)  # made at 48x32, resized to what was asked
        with Image.open(output.path) as image:
            pictures.append(image.tobytes())
    assert pictures[0] == pictures[1]


async def test_model_options_override_steps(pipeline_dir: Path, tmp_path: Path) -> None:
    ctx, progress = _context(tmp_path, "steps", options={"steps": 4, "unrelated": True})
    await _provider(pipeline_dir).run({"prompt": "a cat", "width": SIDE, "height": SIDE}, ctx)
    assert len(progress) == 5


async def test_image_to_image_from_a_data_url(pipeline_dir: Path, tmp_path: Path) -> None:
    provider = _provider(pipeline_dir)
    source = _png((SIDE, 24))
    ctx, progress = _context(tmp_path, "i2i", mode="image-to-image")
    (output,) = await provider.run(
        {
            "mode": "image-to-image",
            "prompt": "a cat in the snow",
            "image_url": _data_url(source),
            "strength": 1.0,
        },
        ctx,
    )
    assert _size_of(output.path) == (SIDE, 24)  # the source's size by default
    assert progress[-1] == 100
    assert len(progress) == 3

    ctx, _ = _context(tmp_path, "i2i-sized", mode="image-to-image")
    (output,) = await provider.run(
        {"prompt": "a cat", "image_url": _data_url(source), "width": 48, "height": 48, "seed": 3}, ctx
    )
    assert _size_of(output.path) == (48, 48)


async def test_an_image_that_is_not_one_is_invalid_input(pipeline_dir: Path, tmp_path: Path) -> None:
    ctx, _ = _context(tmp_path, "junk", mode="image-to-image")
    with pytest.raises(ProviderFailure) as caught:
        await _provider(pipeline_dir).run({"prompt": "a cat", "image_url": _data_url(b"not a picture")}, ctx)
    assert caught.value.fail_code == "INVALID_INPUT"


class _ImageServer(BaseHTTPRequestHandler):
    picture = _png((24, 24), "teal")

    def do_GET(self) -> None:
        if self.path == "/picture.png":
            self.send_response(200)
            self.send_header("content-type", "image/png")
            self.send_header("content-length", str(len(self.picture)))
            self.end_headers()
            self.wfile.write(self.picture)
        elif self.path == "/moved":
            self.send_response(302)
            self.send_header("location", "/picture.png")
            self.send_header("content-length", "0")
            self.end_headers()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ImageServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


async def test_image_url_goes_through_the_ssrf_guard(
    pipeline_dir: Path, tmp_path: Path, image_server: str
) -> None:
    guarded = _provider(pipeline_dir)
    ctx, _ = _context(tmp_path, "refused", mode="image-to-image")
    with pytest.raises(ProviderFailure) as caught:
        await guarded.run({"prompt": "a cat", "image_url": f"{image_server}/picture.png"}, ctx)
    assert caught.value.fail_code == "INVALID_INPUT"
    assert "image_url host 127.0.0.1 is a loopback address" in caught.value.message
    # The way round it is the provider's own option, not the callbacks' setting.
    assert 'allow it with image_allow = ["127.0.0.1"] in [providers.' in caught.value.message
    assert "GENGATE_WEBHOOK_ALLOW" not in caught.value.message

    allowed = _provider(pipeline_dir, image_allow=["127.0.0.1/32"])
    ctx, _ = _context(tmp_path, "allowed", mode="image-to-image")
    (output,) = await allowed.run({"prompt": "a cat", "image_url": f"{image_server}/picture.png"}, ctx)
    assert _size_of(output.path) == (24, 24)

    for path, why in (("/moved", "HTTP 302"), ("/missing.png", "HTTP 404")):
        ctx, _ = _context(tmp_path, path.strip("/"), mode="image-to-image")
        with pytest.raises(ProviderFailure, match=why) as caught:
            await allowed.run({"prompt": "a cat", "image_url": image_server + path}, ctx)
        assert caught.value.fail_code == "INVALID_INPUT"

    limit = len(_ImageServer.picture) - 1
    small = _provider(pipeline_dir, image_allow=["127.0.0.1/32"], max_image_bytes=limit)
    ctx, _ = _context(tmp_path, "too-large", mode="image-to-image")
    with pytest.raises(ProviderFailure, match=f"larger than {limit} bytes"):
        await small.run({"prompt": "a cat", "image_url": f"{image_server}/picture.png"}, ctx)


def _cancel_on_first_step(ctx: RunContext, progress: list[int]) -> None:
    def report(percent: int) -> None:
        progress.append(percent)
        ctx.cancel.set()

    ctx.on_progress = report


async def test_cancel_stops_between_steps(pipeline_dir: Path, tmp_path: Path) -> None:
    provider = _provider(pipeline_dir, steps=MANY_STEPS)
    ctx, progress = _context(tmp_path, "cancel")
    _cancel_on_first_step(ctx, progress)
    with pytest.raises(ProviderFailure) as caught:
        await provider.run({"prompt": "a cat", "width": SIDE, "height": SIDE}, ctx)
    assert caught.value.fail_code == "CANCELED"
    assert 1 <= len(progress) < MANY_STEPS
    assert list(ctx.output_dir.iterdir()) == []

    # The device is free again: the next run goes through.
    ctx, _ = _context(tmp_path, "after")
    assert (
        len(await _provider(pipeline_dir).run({"prompt": "a cat", "width": SIDE, "height": SIDE}, ctx)) == 1
    )


async def test_canceled_before_start_never_runs(pipeline_dir: Path, tmp_path: Path) -> None:
    ctx, progress = _context(tmp_path, "early")
    ctx.cancel.set()
    with pytest.raises(ProviderFailure) as caught:
        await _provider(pipeline_dir).run({"prompt": "a cat"}, ctx)
    assert caught.value.fail_code == "CANCELED"
    assert progress == []


async def test_concurrent_first_runs_load_once_and_take_turns(pipeline_dir: Path, tmp_path: Path) -> None:
    """`max_concurrent = 1`: the device's runs never overlap, so each run's step reports come in
    one unbroken block; three runs started before any load share one load."""
    provider = _provider(pipeline_dir, steps=3, max_concurrent=1)
    assert provider.load_count == 0
    events: list[tuple[int, int]] = []
    contexts = []
    for i in range(3):
        ctx, _ = _context(tmp_path, f"run{i}")
        ctx.on_progress = lambda percent, i=i: events.append((i, percent))
        contexts.append(ctx)
    runs = [
        provider.run({"prompt": "a fox", "width": SIDE, "height": SIDE, "seed": i}, ctx)
        for i, ctx in enumerate(contexts)
    ]
    results = await asyncio.gather(*runs)
    assert [len(outputs) for outputs in results] == [1, 1, 1]
    assert provider.load_count == 1
    steps = [run for run, percent in events if percent < 100]
    assert len(steps) == 9
    blocks = [run for k, run in enumerate(steps) if k == 0 or steps[k - 1] != run]
    assert sorted(blocks) == [0, 1, 2], f"runs overlapped on the device: {steps}"


async def test_a_queued_run_is_dropped_when_canceled(pipeline_dir: Path, tmp_path: Path) -> None:
    provider = _provider(pipeline_dir, steps=MANY_STEPS, max_concurrent=1)
    busy_ctx, busy_progress = _context(tmp_path, "busy")
    started = asyncio.Event()
    busy_ctx.on_progress = lambda percent: (busy_progress.append(percent), started.set())
    busy = asyncio.ensure_future(provider.run({"prompt": "a cat", "width": SIDE, "height": SIDE}, busy_ctx))
    await asyncio.wait_for(started.wait(), timeout=60)

    queued_ctx, queued_progress = _context(tmp_path, "queued")
    queued = asyncio.ensure_future(
        provider.run({"prompt": "a dog", "width": SIDE, "height": SIDE}, queued_ctx)
    )
    await asyncio.sleep(0.05)
    queued_ctx.cancel.set()
    with pytest.raises(ProviderFailure) as caught:
        await asyncio.wait_for(queued, timeout=60)
    assert caught.value.fail_code == "CANCELED"
    assert queued_progress == []
    assert not busy.done(), "the queued run ended only after the busy one"

    busy_ctx.cancel.set()
    with pytest.raises(ProviderFailure):
        await asyncio.wait_for(busy, timeout=60)


async def test_a_folder_that_is_not_a_pipeline_fails_the_task(tmp_path: Path) -> None:
    provider = build_diffusers("broken", {"path": str(tmp_path / "nothing-here")})
    assert isinstance(provider, DiffusersProvider)
    for attempt in range(2):  # a failed load is not remembered: the next task tries again
        ctx, _ = _context(tmp_path, f"broken{attempt}")
        with pytest.raises(ProviderFailure) as caught:
            await provider.run({"prompt": "a cat"}, ctx)
        assert caught.value.fail_code == "PROVIDER_ERROR"
        assert "nothing-here" in caught.value.message
    assert provider.load_count == 0
