"""The `comfyui` kind: models that are ComfyUI workflows, run on a pool of ComfyUI servers.

`[providers.<name>]` lists the servers (`urls`); each model names its API-format graph
(`workflow`) and binds its input fields to node inputs (`bind`). A ComfyUI server runs one
prompt at a time and queues the rest: gengate keeps at most `queue_ahead` prompts waiting on each
(the pool's capacity per server is 1 running + `queue_ahead`), so the rest wait here and go to
whichever server frees up first, never into a slow server's long queue.

A run: take a slot in the pool; upload input images; open the websocket; queue the filled graph
with our own prompt id; follow it (`events`); download the outputs with `GET /view`. A cancel or
timeout takes the prompt off the server (`ComfyServer.cancel`).
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
from PIL import Image, UnidentifiedImageError
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake

from gengate.domain.errors import BadRequest
from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.domain.validation import convert
from gengate.net.bounded import ACCEPT_ENCODING
from gengate.net.guard import AddressPolicy
from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.comfyui.client import ComfyServer
from gengate.providers.comfyui.events import Watch, follow, quietly
from gengate.providers.comfyui.health import HealthWatch, Unreachable
from gengate.providers.comfyui.workflow import Workflow
from gengate.providers.input_image import DEFAULT_MAX_PIXELS, read_image_url
from gengate.providers.relay.errors import provider_fault
from gengate.providers.relay.follow import ABANDON_TIMEOUT_S, canceled, until_canceled
from gengate.providers.server_pool import ServerPool, ServerSlot, pool_options

log = logging.getLogger(__name__)

#: The mode of a workflow model unless the model's `modes` names one.
DEFAULT_MODE = "workflow"


class ComfyOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of a `comfyui` provider, beside `kind`, `timeout_s` and the breaker settings."""

    #: The ComfyUI servers, all able to run the same workflows (same nodes and model files).
    urls: Annotated[list[str], msgspec.Meta(min_length=1)]
    #: Prompts of ours waiting in one server's queue behind the one it runs.
    queue_ahead: Annotated[int, msgspec.Meta(ge=0, le=64)] = 1
    #: Seconds between reads of a prompt's history when the websocket is gone.
    poll_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: Seconds between checks of a server found unreachable (it is skipped until it answers).
    health_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: The most of one output file copied here, and of one JSON answer or websocket message.
    max_output_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 30
    max_answer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 16 << 20
    max_message_bytes: Annotated[int, msgspec.Meta(gt=0)] = 32 << 20
    #: Input images (`*image_url` fields): the most bytes, and networks admitted although private.
    max_image_bytes: Annotated[int, msgspec.Meta(gt=0)] = 20 << 20
    image_allow: list[str] = msgspec.field(default_factory=list)


def parse_options(options: Mapping[str, Any]) -> ComfyOptions:
    return pool_options(options, ComfyOptions)


class ComfyPool:
    """One `[providers.<name>]` of kind comfyui: its servers, their pool and one HTTP client."""

    def __init__(
        self,
        name: str,
        options: ComfyOptions,
        *,
        timeout_s: float = 60.0,
        breaker_failures: int = 5,
        breaker_reset_s: float = 30.0,
        api_key: str | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.timeout_s = timeout_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.pool = ServerPool(
            name,
            options.urls,
            capacity=1 + options.queue_ahead,
            breaker_failures=breaker_failures,
            breaker_reset_s=breaker_reset_s,
        )
        self.http = httpx.AsyncClient(
            timeout=timeout_s, headers={"Accept-Encoding": ACCEPT_ENCODING, **self.headers}, trust_env=False
        )
        self.servers = {
            url: ComfyServer(
                url,
                self.http,
                max_answer_bytes=options.max_answer_bytes,
                max_output_bytes=options.max_output_bytes,
            )
            for url in self.pool.urls
        }
        self.health = HealthWatch(self.pool, self.servers, options.health_s)
        self.image_policy = AddressPolicy(
            (ipaddress.ip_network(cidr, strict=False) for cidr in options.image_allow),
            setting=f'image_allow = ["{{}}"] in [providers.{name}]',
        )

    def link(self, workflow: Path | None, bind: Mapping[str, str], modes: list[str] | None) -> ComfyModel:
        """The provider of one model; `ValueError` says what is wrong with its workflow."""
        if workflow is None:
            raise ValueError("a model of a comfyui provider needs `workflow` (an API-format graph)")
        if modes is not None and len(modes) != 1:
            raise ValueError("a ComfyUI workflow is one mode: give `modes` one name, or leave it out")
        return ComfyModel(self, Workflow.load(workflow, bind), modes[0] if modes else DEFAULT_MODE)

    async def aclose(self) -> None:
        await self.health.aclose()
        self.pool.close()
        await self.http.aclose()


class ComfyModel:
    """One model: a workflow on the pool's servers."""

    def __init__(self, pool: ComfyPool, workflow: Workflow, mode: str) -> None:
        self.comfy = pool
        self.workflow = workflow
        self.inputs: Mapping[str, type[msgspec.Struct]] = {mode: workflow.input_type(mode)}

    @property
    def pool(self) -> ServerPool:
        """The provider's servers, which `/readyz` and `/metrics` show (`pool_states`)."""
        return self.comfy.pool

    async def aclose(self) -> None:
        await self.comfy.aclose()

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        try:  # the worker hands us checked input; a stale task from an older workflow may differ
            values = msgspec.to_builtins(convert(input, next(iter(self.inputs.values())), "input"))
        except BadRequest as exc:
            raise ProviderFailure(FailCode.INVALID_INPUT, exc.message) from None
        images = {
            binding.field: await self._image(values[binding.field])
            for binding in self.workflow.images()
            if values.get(binding.field)
        }
        for _ in self.comfy.servers:  # a server found unreachable is marked down; the next one tries
            async with self.comfy.pool.slot(ctx.cancel) as slot:
                try:
                    return await self._run_on(slot, values, images, ctx)
                except Unreachable as exc:
                    log.warning("task %s: ComfyUI %s: %s", ctx.task_id, slot.url, exc)
                    self.comfy.health.mark_down(slot.url, str(exc))
                    last = exc.failure
        raise last

    async def _image(self, url: str) -> bytes:
        options = self.comfy.options
        data = await read_image_url(url, self.comfy.image_policy, max_bytes=options.max_image_bytes)
        _image_suffix(data)  # a picture, and not too many pixels, before it goes anywhere
        return data

    async def _run_on(
        self, slot: ServerSlot, values: dict[str, Any], images: dict[str, bytes], ctx: RunContext
    ) -> list[OutputFile]:
        server = self.comfy.servers[slot.url]
        prompt_id, client_id = str(uuid.uuid4()), uuid.uuid4().hex
        queued: str | None = None
        try:
            # The socket first: it tells an unreachable server before anything is sent to it.
            async with self._socket(server, client_id) as ws:
                for field, data in images.items():
                    name = f"gengate-{prompt_id}-{field}{_image_suffix(data)}"
                    uploaded = await until_canceled(ctx.cancel, server.upload_image(data, name))
                    values = {**values, field: uploaded}
                graph = self.workflow.fill(values)
                bound = {(b.node, b.input) for b in self.workflow.bindings}
                queued = prompt_id  # from here on it may be on the server: a cancel must reach it
                queued = await until_canceled(
                    ctx.cancel, server.queue_prompt(graph, client_id, prompt_id, bound)
                )
                ctx.on_upstream(queued, None)
                log.info("task %s: queued on ComfyUI %s as prompt %s", ctx.task_id, server.url, queued)
                ctx.log(f"ComfyUI: queued as prompt {queued}")
                watch = Watch(server, queued, graph)
                entry = await until_canceled(ctx.cancel, follow(watch, ws, ctx, self.comfy.options.poll_s))
            queued = None
            outputs = await until_canceled(ctx.cancel, self._download(server, entry, ctx))
            ctx.progress(100)
            return outputs
        except ProviderFailure as failure:
            if failure.fail_code == FailCode.CANCELED and queued is not None:
                await quietly(lambda: server.cancel(queued), ABANDON_TIMEOUT_S, f"cancel of {queued}")
            if failure.transient and failure.fail_code in (FailCode.PROVIDER_ERROR, FailCode.TIMEOUT):
                slot.fail(failure.message)
                await self.comfy.health.check(slot.url)  # a server that died: the next run goes elsewhere
            raise
        except asyncio.CancelledError:
            # Stopped from outside (the model's timeout): the prompt need not go on either.
            if queued is not None:
                await quietly(lambda: server.cancel(queued), ABANDON_TIMEOUT_S, f"cancel of {queued}")
            raise

    def _socket(self, server: ComfyServer, client_id: str) -> _Socket:
        return _Socket(server, client_id, self.comfy)

    async def _download(
        self, server: ComfyServer, entry: dict[str, Any], ctx: RunContext
    ) -> list[OutputFile]:
        items = output_files(entry)
        if not items:
            raise ProviderFailure(
                FailCode.PROVIDER_ERROR,
                "Upstream provider error: the workflow saved no output (does it end in a SaveImage node?)",
            )
        outputs = []
        for index, item in enumerate(items):
            if ctx.cancel.is_set():
                raise canceled()
            outputs.append(await server.download(item, ctx.output_dir, index))
        return outputs


class _Socket:
    """The run's websocket, open before its prompt is queued; None when the server's HTTP works
    but its websocket does not (a proxy that does not pass it): the history is polled instead."""

    def __init__(self, server: ComfyServer, client_id: str, comfy: ComfyPool) -> None:
        self.server, self.client_id, self.comfy = server, client_id, comfy
        self.ws: ClientConnection | None = None

    async def __aenter__(self) -> ClientConnection | None:
        try:
            self.ws = await connect(
                self.server.ws_url(self.client_id),
                additional_headers=self.comfy.headers,
                open_timeout=self.comfy.timeout_s,
                max_size=self.comfy.options.max_message_bytes,
                proxy=None,
            )
        except InvalidHandshake as exc:
            log.warning("ComfyUI %s: no websocket (%s); polling history", self.server.url, exc)
        except (OSError, TimeoutError) as exc:
            raise Unreachable(provider_fault(f"unreachable ({type(exc).__name__}: {exc})")) from exc
        return self.ws

    async def __aexit__(self, *_exc: object) -> None:
        if self.ws is not None:
            await self.ws.close()


def output_files(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of a history entry's `outputs` that ComfyUI saved (`type: output`), node by
    node: `{node_id: {"images": [{filename, subfolder, type}], "gifs": [...], ...}}`."""
    found = []
    outputs = entry.get("outputs")
    for node_outputs in (outputs if isinstance(outputs, dict) else {}).values():
        for items in (node_outputs if isinstance(node_outputs, dict) else {}).values():
            for item in items if isinstance(items, list) else []:
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") == "output":
                    found.append(item)
    return found


def _image_suffix(data: bytes) -> str:
    """The file suffix of a picture Pillow can read; `INVALID_INPUT` otherwise or when too large."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > DEFAULT_MAX_PIXELS:
                raise ProviderFailure(
                    FailCode.INVALID_INPUT, f"The image has {image.width}x{image.height} pixels; too many."
                )
            fmt = (image.format or "png").lower()
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise ProviderFailure(
            FailCode.INVALID_INPUT, f"image_url does not hold an image Pillow can read: {exc}"
        ) from None
    return "." + {"jpeg": "jpg"}.get(fmt, fmt)


def build_comfyui(name: str, options: Mapping[str, Any], **common: Any) -> ComfyPool:
    """The provider `[providers.<name>]` describes; `ValueError` names what is wrong with it."""
    return ComfyPool(name, parse_options(options), **common)
