"""Local diffusers pipelines: text-to-image and image-to-image on this machine's GPU or CPU.

Configured as a provider of `kind = "diffusers"`; needs the `diffusers` extra
(`pip install 'gengate[diffusers]'`). Why it is built this way:

- torch and diffusers are imported when the first task runs, in a thread: configuring the
  provider costs nothing, and a gateway that never runs it never imports them;
- the pipeline is loaded once per process, and concurrent first runs wait for that one load;
- each run gets its own light pipeline object (`from_pipe`: the weights are shared) with its own
  scheduler, because a diffusers pipeline keeps per-call state and is unsafe to share between
  threads;
- runs go to one executor per device whose threads are that device's bound on concurrent runs
  (`max_concurrent`), so the event loop stays free and a GPU is never oversubscribed; a run
  still queued there is dropped at once when canceled;
- progress and cancel cross between the event loop and the run's thread at every denoising step
  (`callback_on_step_end`): progress through `call_soon_threadsafe`, cancel through a
  `threading.Event` that stops the step loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import ipaddress
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
from PIL import Image

from gengate.domain.files import OutputFile
from gengate.domain.inputs import ImageToImageInput, TextToImageInput
from gengate.net.guard import AddressPolicy
from gengate.providers.base import Provider, ProviderFailure, RunContext
from gengate.providers.input_image import DEFAULT_MAX_BYTES, open_image, read_image_url

log = logging.getLogger(__name__)

EXTRA_HINT = "install the diffusers extra: pip install 'gengate[diffusers]'"
#: Pipelines want sides that are multiples of this (16 suits SD, SDXL, SD3 and FLUX); other
#: sizes are generated at the next multiple up and resized to what was asked.
ALIGN = 16
#: Progress reported once all denoising steps are done; decoding and saving take the rest.
STEPS_PERCENT = 95
_MAX_SEED = 2**63 - 1


class DiffusersOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """`[providers.<name>]` of a `kind = "diffusers"` provider."""

    #: A folder written by `save_pretrained`, or a Hugging Face model id found in the local cache.
    path: str
    #: `auto` (CUDA when present, else CPU), or a torch device: `cpu`, `cuda`, `cuda:1`, `mps`.
    device: str = "auto"
    #: Default: float16 on CUDA, float32 elsewhere.
    dtype: Literal["float16", "bfloat16", "float32"] | None = None
    #: Runs at once on the device (shared by every diffusers provider on it).
    max_concurrent: Annotated[int, msgspec.Meta(ge=1, le=64)] = 1
    #: Denoising steps; a model's `options.steps` overrides it.
    steps: Annotated[int, msgspec.Meta(ge=1, le=500)] = 30
    #: Classifier-free guidance; default: the pipeline's own. A model's `options` overrides it.
    guidance_scale: Annotated[float, msgspec.Meta(ge=0)] | None = None
    #: CIDRs an `image_url` may reach although private or loopback (as for callbacks).
    image_allow: list[str] = msgspec.field(default_factory=list)
    image_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    max_image_bytes: Annotated[int, msgspec.Meta(gt=0)] = DEFAULT_MAX_BYTES


class _ModelOptions(msgspec.Struct, kw_only=True):
    """What a model's `options` may override per run; other keys are not this provider's."""

    steps: Annotated[int, msgspec.Meta(ge=1, le=500)] | None = None
    guidance_scale: Annotated[float, msgspec.Meta(ge=0)] | None = None


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The pipeline as loaded on its device, and the executor that runs on that device."""

    pipeline: Any
    gate: ThreadPoolExecutor


@dataclass(slots=True)
class _Job:
    """One run as its thread sees it: settings, the stop flag, and a thread-safe progress call."""

    params: TextToImageInput | ImageToImageInput
    image: bytes | None
    seed: int
    steps: int
    guidance_scale: float | None
    output_dir: Path
    progress: Callable[[float], None]
    stop: threading.Event = field(default_factory=threading.Event)


class _Stopped(Exception):
    """Raised from the step callback to leave the denoising loop at once."""


def _canceled() -> ProviderFailure:
    return ProviderFailure("CANCELED", "Task canceled.")


_gates: dict[str, tuple[int, ThreadPoolExecutor]] = {}
_gates_lock = threading.Lock()


def _gate(device: str, max_concurrent: int) -> ThreadPoolExecutor:
    """The executor of `device`, made on first use; its thread count bounds runs on the device."""
    with _gates_lock:
        if device not in _gates:
            executor = ThreadPoolExecutor(max_concurrent, thread_name_prefix=f"gengate-diffusers-{device}")
            _gates[device] = (max_concurrent, executor)
        limit, executor = _gates[device]
    if limit != max_concurrent:
        log.warning(
            "device %s already runs %d at once; max_concurrent=%d ignored", device, limit, max_concurrent
        )
    return executor


class DiffusersProvider:
    """Modes `text-to-image` and `image-to-image` of one saved pipeline."""

    inputs: Mapping[str, type[msgspec.Struct]] = {
        "text-to-image": TextToImageInput,
        "image-to-image": ImageToImageInput,
    }

    def __init__(self, name: str, options: DiffusersOptions, image_policy: AddressPolicy) -> None:
        self.name = name
        self.options = options
        self.image_policy = image_policy
        #: How many times the pipeline was loaded in this process: 1 once running.
        self.load_count = 0
        self._loaded: _Loaded | None = None
        self._load_lock = threading.Lock()

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        params: TextToImageInput | ImageToImageInput
        if ctx.mode == "text-to-image":
            params = msgspec.convert(input, TextToImageInput)
        elif ctx.mode == "image-to-image":
            params = msgspec.convert(input, ImageToImageInput)
        else:
            raise ProviderFailure("INVALID_INPUT", f"Provider {self.name!r} has no mode {ctx.mode!r}.")
        overrides = self._model_options(ctx.options)
        image = None
        if isinstance(params, ImageToImageInput):
            image = await read_image_url(
                params.image_url,
                self.image_policy,
                max_bytes=self.options.max_image_bytes,
                timeout_s=self.options.image_timeout_s,
            )
        if ctx.cancel.is_set():
            raise _canceled()
        loaded = self._loaded if self._loaded is not None else await asyncio.to_thread(self._load)
        loop = asyncio.get_running_loop()
        job = _Job(
            params=params,
            image=image,
            seed=secrets.randbelow(_MAX_SEED + 1) if params.seed is None else params.seed,
            steps=overrides.steps or self.options.steps,
            guidance_scale=(
                self.options.guidance_scale if overrides.guidance_scale is None else overrides.guidance_scale
            ),
            output_dir=ctx.output_dir,
            progress=lambda percent: _call_soon(loop, ctx.progress, percent),
        )
        paths = await self._in_gate(loaded, job, ctx.cancel)
        ctx.progress(100)
        return [OutputFile(path, "image/png") for path in paths]

    def _model_options(self, options: Mapping[str, Any]) -> _ModelOptions:
        try:
            return msgspec.convert(dict(options), _ModelOptions)
        except msgspec.ValidationError as exc:
            raise ProviderFailure(
                "PROVIDER_ERROR", f"Model options for provider {self.name!r}: {exc}"
            ) from None

    async def _in_gate(self, loaded: _Loaded, job: _Job, cancel: asyncio.Event) -> list[Path]:
        """Run `job` on the device's executor; on cancel, drop it if queued, stop it if running."""
        future = loaded.gate.submit(_generate, loaded.pipeline, job)
        work = asyncio.wrap_future(future)
        # Whatever happens to this coroutine, the outcome of the thread is consumed.
        work.add_done_callback(lambda done: done.cancelled() or done.exception())
        watch = asyncio.ensure_future(cancel.wait())
        try:
            racing: set[asyncio.Future[Any]] = {work, watch}
            await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            job.stop.set()
            if not future.cancel():  # running: it stops at its next step; wait so no file comes later
                await asyncio.gather(work, return_exceptions=True)
            raise _canceled()
        finally:
            job.stop.set()  # a timeout cancels this coroutine: the thread stops too
            future.cancel()
            watch.cancel()

    def _load(self) -> _Loaded:
        """Import torch and diffusers and load the pipeline, once; runs in a thread."""
        with self._load_lock:
            if self._loaded is not None:
                return self._loaded
            if importlib.util.find_spec("torch") is None or importlib.util.find_spec("diffusers") is None:
                raise ProviderFailure("PROVIDER_ERROR", f"Provider {self.name!r} cannot run: {EXTRA_HINT}.")
            import torch
            from diffusers import DiffusionPipeline

            device = self.options.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            dtype_name = self.options.dtype or ("float16" if device.startswith("cuda") else "float32")
            started = time.perf_counter()
            try:
                pipeline = DiffusionPipeline.from_pretrained(
                    self.options.path, dtype=getattr(torch, dtype_name)
                ).to(device)
            except Exception as exc:
                log.exception("provider %s: loading %s failed", self.name, self.options.path)
                raise ProviderFailure(
                    "PROVIDER_ERROR",
                    f"Provider {self.name!r} could not load its pipeline from {self.options.path}: {exc}",
                ) from None
            pipeline.set_progress_bar_config(disable=True)
            log.info(
                "provider %s: loaded %s (%s) on %s, %s, in %.1f s",
                self.name,
                self.options.path,
                type(pipeline).__name__,
                device,
                dtype_name,
                time.perf_counter() - started,
            )
            self.load_count += 1
            self._loaded = _Loaded(pipeline, _gate(device, self.options.max_concurrent))
            return self._loaded


def _call_soon(loop: asyncio.AbstractEventLoop, fn: Callable[[float], None], value: float) -> None:
    with contextlib.suppress(RuntimeError):  # the loop closed: nobody is listening any more
        loop.call_soon_threadsafe(fn, value)


def _generate(base: Any, job: _Job) -> list[Path]:
    """The run itself, in the device's executor: PNGs written into `job.output_dir`."""
    if job.stop.is_set():
        raise _canceled()
    import torch
    from diffusers import AutoPipelineForImage2Image, AutoPipelineForText2Image

    params = job.params
    image2image = isinstance(params, ImageToImageInput)
    auto = AutoPipelineForImage2Image if image2image else AutoPipelineForText2Image
    pipeline = auto.from_pipe(base, scheduler=base.scheduler.from_config(base.scheduler.config))
    pipeline.set_progress_bar_config(disable=True)

    def on_step(pipe: Any, step: int, _timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        if job.stop.is_set():
            raise _Stopped
        total = getattr(pipe, "num_timesteps", None) or job.steps
        job.progress(STEPS_PERCENT * min(1.0, (step + 1) / total))
        return tensors

    kwargs: dict[str, Any] = {
        "prompt": params.prompt,
        "num_inference_steps": job.steps,
        "num_images_per_prompt": params.n,
        "generator": [torch.Generator("cpu").manual_seed(job.seed + i) for i in range(params.n)],
        "callback_on_step_end": on_step,
        "output_type": "pil",
    }
    if job.guidance_scale is not None:
        kwargs["guidance_scale"] = job.guidance_scale
    if isinstance(params, ImageToImageInput):
        assert job.image is not None
        source = open_image(job.image)
        size = (params.width or _side(source.width), params.height or _side(source.height))
        kwargs["image"] = source.resize(_aligned(size), Image.Resampling.LANCZOS)
        kwargs["strength"] = params.strength
    else:
        size = (params.width, params.height)
        kwargs["width"], kwargs["height"] = _aligned(size)
    try:
        images = pipeline(**kwargs).images
    except _Stopped:
        raise _canceled() from None
    except torch.cuda.OutOfMemoryError:
        raise ProviderFailure("PROVIDER_ERROR", "The device ran out of memory.", transient=True) from None
    paths = []
    for i, image in enumerate(images):
        path = job.output_dir / f"{i}.png"
        (image if image.size == size else image.resize(size, Image.Resampling.LANCZOS)).save(path, "PNG")
        paths.append(path)
    return paths


def _side(pixels: int) -> int:
    """A side taken from the source image, within what the input schema allows."""
    return max(16, min(pixels, 2048))


def _aligned(size: tuple[int, int]) -> tuple[int, int]:
    return tuple(max(ALIGN, -(-side // ALIGN) * ALIGN) for side in size)  # type: ignore[return-value]


def build_diffusers(name: str, options: dict[str, Any]) -> Provider:
    """The provider `[providers.<name>]` describes; `ValueError` names what is wrong with it.

    Nothing heavy happens here: the pipeline loads when the first task runs.
    """
    settings = {key: value for key, value in options.items() if key != "kind"}
    try:
        parsed = msgspec.convert(settings, DiffusersOptions)
        policy = AddressPolicy(
            (ipaddress.ip_network(cidr, strict=False) for cidr in parsed.image_allow),
            setting=f'image_allow = ["{{}}"] in [providers.{name}]',
        )
    except (msgspec.ValidationError, ValueError) as exc:
        raise ValueError(f"providers.{name}: {exc}") from None
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("diffusers") is None:
        log.warning("provider %s: torch or diffusers is missing; its tasks will fail; %s", name, EXTRA_HINT)
    return DiffusersProvider(name, parsed, policy)
