"""Following an upstream task to its end: submit, poll with backoff (woken early by the
upstream's callback), report progress, cancel upstream when ours is canceled, then finish.

`TaskRelay` does all of it for a submit-then-follow service; a dialect (`apixo.py`, `kie.py`)
only says which requests to send and how to read their answers.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.relay.errors import failure_for_task, provider_fault
from gengate.providers.relay.hooks import HookWaiter
from gengate.providers.relay.inputs import upstream_input
from gengate.providers.relay.model import UpstreamModel
from gengate.wire import TaskStatus

if TYPE_CHECKING:
    from gengate.providers.relay.upstream import Upstream

log = logging.getLogger(__name__)

T = TypeVar("T")
#: Longest wait for the upstream's answer to a cancel of a task we stopped following.
ABANDON_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Submitted:
    """An upstream's answer to a submit. Fields: `task_id`, `trace_id` (when it gives one)."""

    task_id: str
    trace_id: str | None


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


async def follow(
    up: Upstream,
    ctx: RunContext,
    read: Callable[[], Awaitable[TaskStatus]],
    waiter: HookWaiter | None,
    cancel: Callable[[], Awaitable[None]],
) -> TaskStatus:
    """Read the task's status until it ends: after each backoff delay, or at once when the
    callback wakes us; report its progress; cancel it upstream when ours is canceled or
    `max_wait_s` passes. A failed read is tried again at the next turn, up to
    `retry_attempts` in a row."""
    o = up.options
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
            log.warning("task %s: reading %s failed: %s", ctx.task_id, up.name, failure.message)
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


async def finish(up: Upstream, ctx: RunContext, status: TaskStatus) -> list[OutputFile]:
    """The results of an ended upstream task, copied here; its failure, translated."""
    if not status.succeeded:
        raise failure_for_task(status.fail_code, status.fail_msg)
    if not status.result_urls:
        raise provider_fault("the upstream reported success without any result URL")
    return await up.mirror(ctx, status.result_urls)


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


class TaskRelay(UpstreamModel):
    """A provider for one upstream model of a submit-then-follow dialect.

    `model` is the upstream's model id; None relays under the gateway's own model id.
    """

    def __init__(self, upstream: Upstream, dialect: TaskDialect, model: str | None) -> None:
        super().__init__(upstream, model)
        self.dialect = dialect

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
        async with asyncio.timeout(seconds):
            await work
    except Exception:
        log.warning("best-effort upstream call failed", exc_info=True)
