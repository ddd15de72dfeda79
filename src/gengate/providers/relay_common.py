"""What every relay shares: one pooled HTTP client per upstream, retries, following a task,
and copying the results into the gateway's own files.

Wire parsing that the SDK already does (envelopes, `resultJson`, `Retry-After`, error bodies)
is the SDK's own `gengate.client._protocol`, so the client and the relays read upstreams alike.
A dialect module only says which requests to send and how to read their answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Protocol, TypeVar

import httpx
import msgspec
import stamina

from gengate.client import _protocol as proto
from gengate.client._errors import APIError, ProtocolError
from gengate.client._httpread import ACCEPT_ENCODING, BodyError, send_capped
from gengate.client._models import TaskStatus
from gengate.domain.states import FailCode
from gengate.providers import relay_mirror
from gengate.providers.base import OutputFile, ProviderFailure, RunContext
from gengate.providers.relay_errors import (
    failure_for_body,
    failure_for_request,
    failure_for_task,
    failure_for_transport,
    provider_fault,
)
from gengate.providers.relay_hooks import HookWaiter, UpstreamHooks
from gengate.providers.relay_inputs import RELAY_INPUTS, relay_inputs, upstream_input

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Longest wait for the upstream's answer to a cancel of a task we stopped following.
ABANDON_TIMEOUT_S = 5.0


class RelayOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of every relay kind, beside `base_url` and friends under `[providers.<name>]`.

    Polling follows seed 002's advice (3 s, x1.5, at most 30 s between reads); tests shrink it.
    """

    #: Modes its models may offer (a model's `modes` picks among them).
    modes: list[str] = msgspec.field(default_factory=lambda: list(RELAY_INPUTS))
    poll_initial_s: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    poll_factor: Annotated[float, msgspec.Meta(ge=1)] = 1.5
    poll_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: Longest wait for one upstream task before moving on (TIMEOUT); default: the model's timeout.
    max_wait_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: Tries of one request that meets 429, 5xx or no answer; other 4xx are never repeated.
    retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    retry_initial_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    retry_max_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Ask the upstream for a callback when the gateway has a public URL.
    callbacks: bool = True
    #: The most of one result file copied here (decoded bytes, counted as they arrive).
    max_result_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 30
    #: The most of one JSON answer read into memory (decoded bytes); past it, a provider error.
    max_answer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 16 << 20


OptionsT = TypeVar("OptionsT", bound=RelayOptions)


def parse_options(options: Mapping[str, Any], kind: type[OptionsT]) -> OptionsT:
    """The kind's options from the provider's extra keys; `ValueError` names a bad one.
    Lax: options set through `GENGATE_PROVIDERS__<NAME>__<OPTION>` arrive as strings."""
    try:
        parsed = msgspec.convert(dict(options), kind, strict=False)
        relay_inputs(parsed.modes)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    return parsed


@dataclass(frozen=True, slots=True)
class Submitted:
    """An upstream's answer to a submit. Fields: `task_id`, `trace_id` (when it gives one)."""

    task_id: str
    trace_id: str | None


class _RetryableResponse(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def retryable(response: httpx.Response) -> bool:
    """Seed 003's guidance: 429 and 5xx may pass; other errors would fail the same way again."""
    return response.status_code == 429 or response.status_code >= 500


def canceled() -> ProviderFailure:
    return ProviderFailure(FailCode.CANCELED, "Task canceled.")


async def until_canceled(cancel: asyncio.Event, work: Awaitable[T]) -> T:
    """`work`, abandoned (and its request closed) as soon as the task is canceled."""
    job = asyncio.ensure_future(work)
    stop = asyncio.ensure_future(cancel.wait())
    try:
        await asyncio.wait({job, stop}, return_when=asyncio.FIRST_COMPLETED)
        if job.done():
            return job.result()
        raise canceled()
    finally:
        for future in (job, stop):
            future.cancel()
        await asyncio.gather(job, stop, return_exceptions=True)


async def _first_of(events: Sequence[asyncio.Event], seconds: float) -> None:
    """Return when any event is set or `seconds` pass."""
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
        await asyncio.gather(*waits, return_exceptions=True)


class Upstream:
    """One configured upstream service: address, key, options and a pooled HTTP client.

    The key goes only to the upstream's own origin, never to a CDN its result URLs point at.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        options: RelayOptions,
        hooks: UpstreamHooks | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.hooks = hooks
        self.inputs: Mapping[str, type[msgspec.Struct]] = relay_inputs(options.modes)
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers={"Accept-Encoding": ACCEPT_ENCODING}
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- requests ---------------------------------------------------------------------
    def _retrier(self) -> Any:
        """stamina's retry loop with this upstream's schedule: exponential backoff with jitter."""
        o = self.options
        return stamina.retry_context(
            on=self._backoff,
            attempts=o.retry_attempts,
            timeout=None,
            wait_initial=o.retry_initial_s,
            wait_max=o.retry_max_s,
            wait_jitter=o.retry_initial_s,
        )

    def _backoff(self, exc: Exception) -> bool | float:
        """Retry 429/5xx (waiting `Retry-After` plus jitter when given) and lost connections."""
        if isinstance(exc, _RetryableResponse):
            after = proto.parse_retry_after(exc.response.headers.get("Retry-After"))
            if after is None:
                return True
            jitter = random.uniform(0, self.options.retry_initial_s)  # noqa: S311 - jitter, not a secret
            return min(after, self.options.retry_max_s) + jitter
        return isinstance(exc, httpx.TransportError)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry_if: Callable[[httpx.Response], bool] = retryable,
    ) -> httpx.Response:
        """Send with the upstream's key, retrying what `retry_if` allows; the last response, read
        whole up to `max_answer_bytes`.

        Raises a transient :class:`ProviderFailure` when no answer came at all, or one too large.
        """
        headers = {**self.auth, **(headers or {})}
        limit = self.options.max_answer_bytes
        try:
            async for attempt in self._retrier():
                with attempt:
                    request = self.http.build_request(method, path, json=json, params=params, headers=headers)
                    response = await send_capped(self.http, request, limit)
                    if retry_if(response):
                        raise _RetryableResponse(response)
                    return response
        except _RetryableResponse as exc:
            return exc.response
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc
        except BodyError as exc:
            raise failure_for_body(f"the answer to {method} {path}", exc, "max_answer_bytes") from exc
        raise AssertionError("retry_context ended without an attempt")  # pragma: no cover

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[dict[str, Any], str | None]:
        """`data` of a `{code, message|msg, data}` envelope, and the answer's trace id."""
        response = await self.request(method, path, **kwargs)
        try:
            return proto.unwrap(response), response.headers.get("X-Trace-Id")
        except APIError as exc:
            raise failure_for_request(exc) from exc
        except ProtocolError as exc:
            raise provider_fault(f"unexpected answer from {path}: {exc}") from exc

    # -- following a task ---------------------------------------------------------------
    @contextlib.contextmanager
    def callback(self) -> Iterator[HookWaiter | None]:
        """A callback waiter when the upstream can reach us and callbacks are on, else None."""
        if self.hooks is None or not self.options.callbacks:
            yield None
            return
        with self.hooks.waiter() as waiter:
            yield waiter

    def announce(self, ctx: RunContext, submitted: Submitted) -> None:
        """Hand the upstream task id and trace id to the worker, and log them."""
        log.info(
            "task %s runs upstream on %s as %s (trace_id %s)",
            ctx.task_id,
            self.name,
            submitted.task_id,
            submitted.trace_id,
        )
        ctx.on_upstream(submitted.task_id, submitted.trace_id)

    async def follow(
        self,
        ctx: RunContext,
        read: Callable[[], Awaitable[TaskStatus]],
        waiter: HookWaiter | None,
        cancel: Callable[[], Awaitable[None]],
    ) -> TaskStatus:
        """Read the task's status until it ends: after each backoff delay, or at once when the
        callback wakes us; report its progress; cancel it upstream when ours is canceled or
        `max_wait_s` passes. A failed read is tried again at the next turn, up to
        `retry_attempts` in a row."""
        o = self.options
        loop = asyncio.get_running_loop()
        deadline = None if o.max_wait_s is None else loop.time() + o.max_wait_s
        events = [ctx.cancel] if waiter is None else [ctx.cancel, waiter.wake]
        delay = o.poll_initial_s
        failed_reads = 0
        while True:
            timeout = delay if deadline is None else max(0.0, min(delay, deadline - loop.time()))
            await _first_of(events, timeout)
            if ctx.cancel.is_set():
                await cancel()
                raise canceled()
            if waiter is not None:
                waiter.wake.clear()
            try:
                status = await read()
            except ProviderFailure as failure:
                failed_reads += 1
                if failed_reads >= o.retry_attempts:
                    raise
                log.warning("task %s: reading %s failed: %s", ctx.task_id, self.name, failure.message)
            else:
                failed_reads = 0
                if status.progress is not None:
                    ctx.progress(status.progress)
                if status.is_terminal:
                    return status
            if deadline is not None and loop.time() >= deadline:
                await cancel()
                raise provider_fault(f"the task did not finish within {o.max_wait_s:g} s", FailCode.TIMEOUT)
            delay = min(delay * o.poll_factor, o.poll_max_s)

    async def finish(self, ctx: RunContext, status: TaskStatus) -> list[OutputFile]:
        """The results of an ended upstream task, copied here; its failure, translated."""
        if not status.succeeded:
            raise failure_for_task(status.fail_code, status.fail_msg)
        if not status.result_urls:
            raise provider_fault("the upstream reported success without any result URL")
        return await self.mirror(ctx, status.result_urls)

    # -- results ------------------------------------------------------------------------
    async def mirror(self, ctx: RunContext, urls: Sequence[str]) -> list[OutputFile]:
        """Copy each result into `ctx.output_dir`, streaming: our URLs outlive the upstream's."""
        outputs = []
        for index, url in enumerate(urls):
            if ctx.cancel.is_set():
                raise canceled()
            outputs.append(await self.download(url, ctx.output_dir, index))
        return outputs

    async def download(self, url: str, folder: Path, index: int) -> OutputFile:
        """Stream one result URL into `folder` as `<index><suffix>`, retrying as requests do."""
        base = self.http.base_url
        target = base.join(url)
        if target.scheme not in ("http", "https"):
            raise provider_fault(f"result URL {url[:100]!r} is not http(s)")
        same_origin = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        headers = self.auth if same_origin else {}
        try:
            async for attempt in self._retrier():
                with attempt:
                    async with self.http.stream(
                        "GET", target, headers=headers, follow_redirects=True
                    ) as answer:
                        if retryable(answer):
                            raise _RetryableResponse(answer)  # its body is never read
                        if not answer.is_success:
                            raise provider_fault(f"result download answered HTTP {answer.status_code}")
                        limit = self.options.max_result_bytes
                        return await relay_mirror.save(answer, folder, index, limit)
        except _RetryableResponse as exc:
            raise provider_fault(f"result download answered HTTP {exc.response.status_code}") from exc
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc
        raise AssertionError("retry_context ended without an attempt")  # pragma: no cover


def idempotency_key(ctx: RunContext, upstream: Upstream) -> str:
    """One key per attempt of a task on one upstream: a retried submit creates nothing twice."""
    return f"{ctx.task_id}.{ctx.attempt}.{upstream.name}"


class TaskDialect(Protocol):
    """How a submit-then-follow dialect (APIXO, KIE) speaks; the relay does the rest."""

    async def submit(
        self, up: Upstream, model: str, input: dict[str, Any], callback_url: str | None, key: str
    ) -> Submitted: ...

    async def read(self, up: Upstream, model: str, task_id: str) -> TaskStatus: ...

    async def cancel(self, up: Upstream, model: str, task_id: str) -> None: ...


class TaskRelay:
    """A provider for one upstream model of a submit-then-follow dialect.

    `model` is the upstream's model id; None relays under the gateway's own model id.
    """

    def __init__(self, upstream: Upstream, dialect: TaskDialect, model: str | None) -> None:
        self.upstream = upstream
        self.dialect = dialect
        self.model = model
        self.inputs: Mapping[str, type[msgspec.Struct]] = upstream.inputs

    async def aclose(self) -> None:
        await self.upstream.aclose()

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        up, dialect = self.upstream, self.dialect
        model = self.model or ctx.model
        payload = upstream_input(input, ctx.mode)
        with up.callback() as waiter:
            callback_url = None if waiter is None else waiter.url
            submitted = await dialect.submit(up, model, payload, callback_url, idempotency_key(ctx, up))
            up.announce(ctx, submitted)
            cancel = functools.partial(dialect.cancel, up, model, submitted.task_id)
            try:
                status = await up.follow(
                    ctx, lambda: dialect.read(up, model, submitted.task_id), waiter, cancel
                )
            except asyncio.CancelledError:
                # Stopped from outside (the model's timeout): the upstream task need not go on either.
                await _quietly(cancel(), ABANDON_TIMEOUT_S)
                raise
        return await up.finish(ctx, status)


async def _quietly(work: Awaitable[None], seconds: float) -> None:
    """Best effort, bounded: a failure or a slow answer is only logged."""
    try:
        await asyncio.wait_for(work, seconds)
    except Exception:
        log.warning("best-effort upstream call failed", exc_info=True)
