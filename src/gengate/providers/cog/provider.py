"""`kind = "cog"`: a model served by one or more cog servers, behind the gateway.

Each run takes a slot of the pool (a server with room; the rest wait in turn), then sends one
`PUT /predictions/<task id>.<attempt>` there and holds its answer open until the prediction
ends (see :mod:`.client` for why). A busy (409) or still starting (503) server gives the slot
back and the run waits for another; a server that cannot be reached is taken out and the run
goes to the next one; a server lost mid-run makes the attempt fail WORKER_LOST (transient:
the worker tries again, on another server, while `max_attempts` allows). Cancel and timeout
send `POST /predictions/<id>/cancel`. The prediction's output becomes our files and plain
output (:mod:`.outputs`), its logs the task's logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec

from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.net.bounded import ACCEPT_ENCODING
from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.cog.client import CogClient, Refused, ServerLost
from gengate.providers.cog.outputs import collect
from gengate.providers.cog.schema import CogInput, CogSchema
from gengate.providers.cog.watch import HealthWatch
from gengate.providers.relay.errors import _CONTENT, failure_for_transport, provider_fault
from gengate.providers.relay.follow import canceled
from gengate.providers.relay.hooks import UpstreamHooks
from gengate.providers.relay.mirror import save
from gengate.providers.server_pool import ServerPool, ServerSlot, ServerState, pool_options

log = logging.getLogger(__name__)

Seconds = Annotated[float, msgspec.Meta(gt=0)]


class CogOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of `kind = "cog"`, beside the common ones under `[providers.<name>]`."""

    #: The cog servers, all running the same model.
    urls: Annotated[list[str], msgspec.Meta(min_length=1)]
    #: Modes the model offers (its input is the predictor's own either way).
    modes: Annotated[list[str], msgspec.Meta(min_length=1)] = msgspec.field(
        default_factory=lambda: ["predict"]
    )
    #: Predictions one server runs at once (cog.yaml's `concurrency.max`).
    slots: Annotated[int, msgspec.Meta(ge=1, le=1024)] = 1
    #: Seconds between two health checks of each server, and the longest wait for one's answer.
    health_interval_s: Seconds = 5.0
    health_timeout_s: Seconds = 5.0
    #: Ask the servers for webhooks (the run's logs as it goes) when the gateway has a public URL.
    webhooks: bool = True
    #: Longest wait for a canceled prediction to stop before its slot is given back.
    cancel_wait_s: Seconds = 10.0
    #: The most of one result file (a URL's body, or a `data:` URI's bytes).
    max_result_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 30
    #: The most of one answer read into memory; a prediction's answer holds its `data:` URIs.
    max_answer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 256 << 20


def parse_cog_options(options: Mapping[str, Any]) -> CogOptions:
    """The options from the provider's extra keys; `ValueError` names a bad one."""
    return pool_options(options, CogOptions)


class CogProvider:
    """One cog model on a pool of servers."""

    def __init__(
        self,
        name: str,
        options: CogOptions,
        *,
        timeout_s: float,
        breaker_failures: int,
        breaker_reset_s: float,
        hooks: UpstreamHooks | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.hooks = hooks if options.webhooks else None
        self.pool = ServerPool(
            name,
            options.urls,
            capacity=options.slots,
            breaker_failures=breaker_failures,
            breaker_reset_s=breaker_reset_s,
        )
        self.http = httpx.AsyncClient(headers={"Accept-Encoding": ACCEPT_ENCODING}, timeout=timeout_s)
        self.clients = {
            url: CogClient(
                url,
                self.http,
                timeout_s=timeout_s,
                max_answer_bytes=options.max_answer_bytes,
                health_timeout_s=options.health_timeout_s,
            )
            for url in options.urls
        }
        self.schema = CogSchema(on_use=self._start_watch)
        self.watch = HealthWatch(self.pool, self.clients, self.schema, options.health_interval_s)
        self.inputs: Mapping[str, type[msgspec.Struct]] = dict.fromkeys(options.modes, CogInput)
        #: Each mode's input is checked against the schema the servers publish.
        self.input_checks: Mapping[str, CogSchema] = dict.fromkeys(options.modes, self.schema)

    def _start_watch(self) -> None:
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to start it on
            self.watch.start()

    def servers(self) -> list[ServerState]:
        """The pool's servers now, for `/readyz` and `/metrics`."""
        return self.pool.snapshot()

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        await self.watch.started()
        payload = {key: value for key, value in input.items() if key != "mode"}
        prediction_id = f"{ctx.task_id}.{ctx.attempt}"
        logs = _LogFeed(ctx)
        with self._webhook(logs) as webhook:
            while True:
                async with self.pool.slot(ctx.cancel) as slot:
                    outcome = await self._run_on(slot, prediction_id, payload, webhook, ctx)
                    if outcome is Refused.BUSY:
                        slot.full()
                    elif outcome is Refused.STARTING:
                        self.pool.mark_starting(slot.url)
                    elif outcome is not None:  # None: unreachable, taken out; the run goes elsewhere
                        break
        logs.feed(outcome.get("logs"))
        return await self._finish(outcome, ctx)

    async def _run_on(
        self,
        slot: ServerSlot,
        prediction_id: str,
        payload: dict[str, Any],
        webhook: str | None,
        ctx: RunContext,
    ) -> dict[str, Any] | Refused | None:
        """One prediction on `slot`'s server: its end, a refusal, or None when unreachable."""
        client = self.clients[slot.url]
        log.info("task %s runs on %s as prediction %s", ctx.task_id, slot.url, prediction_id)
        job = asyncio.ensure_future(client.predict(prediction_id, payload, webhook))
        stop = asyncio.ensure_future(ctx.cancel.wait())
        try:
            await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not job.done():
                await self._cancel(client, prediction_id, job)
                raise canceled()
            return job.result()
        except asyncio.CancelledError:
            # Stopped from outside (the model's timeout): the prediction need not go on either.
            await self._cancel(client, prediction_id, job)
            raise
        except ServerLost as exc:
            slot.fail(str(exc))
            self.pool.mark_down(slot.url, f"connection lost during a prediction ({exc})")
            raise ProviderFailure(
                FailCode.WORKER_LOST,
                f"The model server {slot.url} went away during the run.",
                transient=True,
            ) from exc
        except ProviderFailure as failure:
            if not failure.transient:
                raise
            slot.fail(failure.message)
            if isinstance(failure.__cause__, httpx.TransportError):
                self.pool.mark_down(slot.url, f"unreachable: {failure.message}")
                return None
            raise
        finally:
            for future in (job, stop):
                future.cancel()
            await asyncio.gather(job, stop, return_exceptions=True)

    async def _cancel(self, client: CogClient, prediction_id: str, job: asyncio.Future[Any]) -> None:
        """Ask the server to stop, then give it a while to do so: the slot frees when it has."""
        try:
            async with asyncio.timeout(self.options.cancel_wait_s):
                await client.cancel(prediction_id)
            await asyncio.wait({job}, timeout=self.options.cancel_wait_s)
        except Exception as exc:
            log.warning("cancel of prediction %s on %s failed: %s", prediction_id, client.url, exc)

    @contextlib.contextmanager
    def _webhook(self, logs: _LogFeed) -> Iterator[str | None]:
        if self.hooks is None:
            yield None
            return
        with self.hooks.waiter(on_body=logs.feed_webhook) as waiter:
            yield None if waiter is None else waiter.url

    async def _finish(self, prediction: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
        status = prediction.get("status")
        if status == "succeeded":
            found = await collect(
                prediction.get("output"), ctx.output_dir, self._download, self.options.max_result_bytes
            )
            if found.has_plain:
                ctx.output(found.plain)
            return found.files
        error = str(prediction.get("error") or "no error message").strip()
        if status == "canceled":
            if ctx.cancel.is_set():
                raise canceled()
            raise provider_fault(f"the prediction was canceled on the server: {error}")
        if status == "failed":
            fail_code = FailCode.CONTENT_VIOLATION if _CONTENT.search(error) else FailCode.PROVIDER_ERROR
            # The model itself failed on this input: another attempt would run the same code again.
            raise ProviderFailure(fail_code, f"The model failed: {error[:500]}")
        raise provider_fault(f"the prediction ended with status {status!r}")

    async def _download(self, url: str, folder: Path, index: int) -> OutputFile:
        """One output URL (the server uploaded the file) into our folder, streamed and bounded."""
        try:
            async with self.http.stream("GET", url, follow_redirects=True) as answer:
                if not answer.is_success:
                    raise provider_fault(f"an output URL answered HTTP {answer.status_code}")
                return await save(answer, folder, index, self.options.max_result_bytes)
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc

    async def aclose(self) -> None:
        await self.watch.aclose()
        self.pool.close()
        await self.http.aclose()


class _LogFeed:
    """cog sends the whole log so far each time: only what is new goes to the task's log."""

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx
        self.seen = 0

    def feed(self, logs: object) -> None:
        if isinstance(logs, str) and len(logs) > self.seen:
            self.ctx.log(logs[self.seen :])
            self.seen = len(logs)

    def feed_webhook(self, body: bytes) -> None:
        try:
            prediction = json.loads(body)
        except ValueError:
            return
        if isinstance(prediction, dict):
            self.feed(prediction.get("logs"))


def build_cog(
    name: str,
    options: Mapping[str, Any],
    *,
    timeout_s: float,
    breaker_failures: int,
    breaker_reset_s: float,
    hooks: UpstreamHooks | None,
) -> CogProvider:
    return CogProvider(
        name,
        parse_cog_options(options),
        timeout_s=timeout_s,
        breaker_failures=breaker_failures,
        breaker_reset_s=breaker_reset_s,
        hooks=hooks,
    )
