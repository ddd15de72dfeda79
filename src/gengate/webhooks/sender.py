"""Delivering the callback outbox: signed, retried on a schedule, never to a forbidden address.

Due deliveries are claimed in batches under a lease (so several senders never send one twice at
once); the batch's tasks are read in one query and the keys' secrets once per key. Each attempt
runs in its own coroutine, within the global `concurrency` and its receiver host's window
(:mod:`gengate.webhooks.hosts`), so a slow receiver holds up nobody else; attempts are recorded
in batches (one transaction for whatever finished together). The sender connects to the address
the SSRF guard checked for this attempt, never resolving the name a second time, and follows no
redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from gengate.background import report, spawn
from gengate.batcher import Batcher
from gengate.dialects import CALLBACK_LOGS, Links, render_callback
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryState
from gengate.domain.task import Task
from gengate.metrics import Metrics
from gengate.net.guard import (
    RESOLVE_TIMEOUT_S,
    AddressPolicy,
    UnsafeUrl,
    resolve_and_check,
)
from gengate.observability import tracing
from gengate.observability.context import bound_task, trace_headers
from gengate.store.base import Store
from gengate.store.handover import CallbackLease
from gengate.store.notify import ChangeHub
from gengate.webhooks.accounting import count_attempt
from gengate.webhooks.hosts import HostLimits
from gengate.webhooks.jobs import Job, host_of
from gengate.webhooks.resolving import DEFAULT_TTL_S, ResolutionCache
from gengate.webhooks.retry import Outcome, attempt_result, refused_for_good
from gengate.webhooks.signing import signed_headers
from gengate.webhooks.transport import Transport

log = logging.getLogger(__name__)

#: Added to the longest an attempt can take (resolve, then send) to make the delivery lease.
LEASE_MARGIN_S = 30.0
#: Under load, how long the sender lets newly owed deliveries gather before claiming them.
CLAIM_GATHER_S = 0.005
#: A claim this soon after the last one is a burst's: it gathers too, even with nothing in flight
#: (each task's end wakes the sender; claiming at each wake-up was one write per callback).
BURST_S = 3 * CLAIM_GATHER_S
#: How soon a delivery given back unsent (its host busy) is due again, at the least.
BUSY_DELAY_MS = 250


@dataclass
class WebhookSender:
    store: Store
    hub: ChangeHub
    #: The signed result URLs a callback body names (the API's status bodies name the same).
    links: Links
    #: The `whsec_...` secret of a key id.
    secret_for: Callable[[str], Awaitable[str]]
    policy: AddressPolicy
    schedule: Sequence[float]
    metrics: Metrics
    timeout_s: float = 10.0
    #: Attempts in flight at once, over every receiver.
    concurrency: int = 64
    #: The most attempts in flight to one receiver host (its window adapts below it); 0: half
    #: of `concurrency`, so that one receiver never holds every slot.
    host_concurrency: int = 0
    #: An answer slower than this halves its host's window.
    slow_s: float = 1.0
    #: Offered to https receivers by ALPN (taken where they pick it).
    http2: bool = False
    #: How long a resolved host name is used again (each delivery still checks its addresses).
    resolve_ttl_s: float = DEFAULT_TTL_S
    #: Held while one attempt runs: past it (a sender that died mid-attempt) another takes over.
    #: 0 derives it from the longest an attempt can take, so a slow attempt is never sent twice.
    lease_ms: int = 0
    idle_poll_s: float = 5.0
    owner: str = field(default_factory=lambda: "s_" + secrets.token_hex(6))
    _loop_task: asyncio.Task[None] | None = None
    #: Every delivery's coroutine until its attempt is recorded (what `stop` waits for).
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)
    #: Attempts not yet answered: what holds a slot of `concurrency`. The record is written
    #: after the slot is free, so that the commit's flush does not hold the sender back.
    _sending: int = 0
    #: Slots reserved for callbacks being handed over: leased in a task's ending, not started yet.
    _reserved: int = 0
    _taking: asyncio.Task[None] | None = None

    def __post_init__(self) -> None:
        if self.lease_ms <= 0:
            self.lease_ms = int((self.timeout_s + RESOLVE_TIMEOUT_S + LEASE_MARGIN_S) * 1000)
        per_host = self.host_concurrency or max(1, self.concurrency // 2)
        self._hosts: HostLimits[Job] = HostLimits(min(per_host, self.concurrency), self.slow_s)
        self._transport = Transport(self.timeout_s, self.concurrency, per_host, http2=self.http2)
        self._resolver = ResolutionCache(ttl_s=self.resolve_ttl_s)
        self._records: Batcher[tuple[Delivery, AttemptResult], bool] = Batcher(self._record_batch)
        #: Claim again once this many slots are free (or none is busy): a claim per batch, not
        #: one per finished attempt.
        self._claim_at = max(1, self.concurrency // 4)
        self._slots = asyncio.Event()
        #: A waiting delivery may start only while its lease still covers a whole attempt.
        self._start_within_s = self.lease_ms / 1000 - self.timeout_s - RESOLVE_TIMEOUT_S
        self._stopping = False
        self._lease = CallbackLease(self.owner, self.lease_ms)
        #: Callbacks handed over, to be started on the next turn of the loop.
        self._handed: list[Job] = []
        #: When the last claim found deliveries (monotonic): see BURST_S.
        self._claimed_at = 0.0
        #: Waiting deliveries not started because the sender stops: given back by `stop`.
        self._unsent: list[Job] = []

    async def start(self) -> None:
        self._stopping = False
        self._transport.open()
        self._loop_task = spawn(self._run(), "the callback sender", name="gengate-webhooks")
        self.store.callback_intake = self

    async def stop(self, grace_s: float = 5.0) -> None:
        self._stopping = True  # waiting deliveries are given back, not started
        if self.store.callback_intake is self:
            self.store.callback_intake = None
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._taking is not None:
            await asyncio.gather(self._taking, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()  # its lease expires and another sender (or the next start) retries
            await asyncio.gather(*pending, return_exceptions=True)
        if self._unsent:
            await self._give_back(self._unsent)
            self._unsent.clear()
        await self._records.close()
        await self._transport.close()

    # -- callbacks handed over by the store (gengate.store.handover) ---------------------------
    def lease(self) -> CallbackLease | None:
        # Not with tracing on: a handed-over callback comes without its task's trace context.
        if self._stopping or self._loop_task is None or self._free() <= 0 or tracing.active():
            return None
        self._reserved += 1
        return self._lease

    def unlease(self) -> None:
        self._unreserve(1)

    def take(self, delivery: Delivery, task: Task) -> None:
        self._handed.append(Job(delivery, host_of(delivery.url), time.monotonic(), task=task))
        if self._taking is None or self._taking.done():
            # The endings committed together are started together, on the next turn.
            self._taking = spawn(self._take_handed(), "starting callbacks handed over")

    async def _take_handed(self) -> None:
        while self._handed:
            jobs, self._handed = self._handed, []
            try:
                if self._stopping:
                    self._unsent.extend(jobs)
                else:
                    await self._start(jobs)
            finally:
                self._unreserve(len(jobs))  # started, waiting for their host, or given back

    def _unreserve(self, count: int) -> None:
        self._reserved -= count
        if self._free() >= self._claim_at or not self._sending:
            self._slots.set()

    # -- claiming --------------------------------------------------------------------------
    def _free(self) -> int:
        return self.concurrency - self._sending - self._hosts.waiting - self._reserved

    async def _run(self) -> None:
        while True:
            try:
                free = self._free()
                busy = self._sending > 0
                if free >= self._claim_at or (free > 0 and not busy):
                    if busy or time.monotonic() - self._claimed_at < BURST_S:
                        # Under load: let the deliveries owed meanwhile gather into one claim.
                        await asyncio.sleep(CLAIM_GATHER_S)
                        free = self._free()
                    claimed = await self.store.claim_deliveries(self.owner, free, self.lease_ms)
                    if claimed:
                        self._claimed_at = time.monotonic()
                        await self._dispatch(claimed)
                        continue
                if busy and free < self._claim_at:
                    # Full: the next claim comes when a batch of slots is free again.
                    self._slots.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.idle_poll_s):
                            await self._slots.wait()
                    continue
                await self.hub.wait_deliveries(await self._idle_wait())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                report(log, "claiming callbacks failed (trying again)", exc)
                await asyncio.sleep(1.0)

    async def _idle_wait(self) -> float:
        due = await self.store.next_delivery_due()
        if due is None:
            return self.idle_poll_s
        return min(self.idle_poll_s, max(0.0, (due - now_ms()) / 1000))

    async def _dispatch(self, claimed: Sequence[Delivery]) -> None:
        clock = time.monotonic()
        await self._start([Job(delivery, host_of(delivery.url), clock) for delivery in claimed])

    async def _start(self, jobs: Sequence[Job]) -> None:
        """Start, queue by their host, or give back the deliveries of one claim."""
        await self._prepare(jobs)
        given_back: list[Job] = []
        for job in jobs:
            admitted = self._hosts.admit(job.host, job)
            if admitted:
                self._launch(job)
            elif admitted is None:
                given_back.append(job)
        if given_back:
            await self._give_back(given_back)

    async def _prepare(self, jobs: Sequence[Job]) -> None:
        """The batch's tasks (one read; handed over ones come with theirs) and its keys' secrets
        (one lookup per key)."""
        unread = [job for job in jobs if job.task is None]
        try:
            ids = list({job.delivery.task_id for job in unread})
            found = await self.store.callback_tasks(ids) if ids else {}
        except Exception as exc:  # each attempt reads its task again, and records what goes wrong
            report(log, "reading the tasks of a batch of callbacks failed", exc)
            found = None
        for job in unread:
            if found is None:
                job.task_read = False
            else:
                job.task, job.traceparent = found.get(job.delivery.task_id, (None, None))
        keys: dict[str, str | BaseException] = {}
        for key_id in {job.delivery.key_id for job in jobs}:
            try:
                keys[key_id] = await self.secret_for(key_id)
            except Exception as exc:  # its attempts fail with it, and are recorded
                keys[key_id] = exc
        for job in jobs:
            job.secret = keys[job.delivery.key_id]

    async def _give_back(self, jobs: Sequence[Job]) -> None:
        """Back to the outbox unsent, no attempt counted: due again in a moment."""
        by_host: dict[str, int] = {}
        for job in jobs:
            by_host[job.host] = by_host.get(job.host, 0) + 1
        until = now_ms() + BUSY_DELAY_MS
        try:
            await self.store.defer_deliveries(self.owner, [job.delivery.id for job in jobs], until)
        except Exception as exc:  # their leases run out and they are claimed again then
            report(log, "giving back callbacks of busy hosts failed", exc)
        log.debug("%d callbacks given back for later, their hosts busy: %s", len(jobs), by_host)

    def _launch(self, job: Job) -> None:
        delivery = job.delivery
        task = spawn(
            self._deliver(job),
            f"callback {delivery.id} of task {delivery.task_id}",
            name=f"gengate-webhook-{delivery.id}",
        )
        self._inflight.add(task)
        self._sending += 1
        task.add_done_callback(functools.partial(self._done, job))

    def _answered(self, job: Job) -> None:
        """The attempt's slot is free (answered, failed or cancelled): claim again once a batch
        of slots is."""
        if job.answered:
            return
        job.answered = True
        self._sending -= 1
        if self._free() >= self._claim_at or not self._sending:
            self._slots.set()

    def _done(self, job: Job, task: asyncio.Task[None]) -> None:
        self._answered(job)  # a coroutine cancelled before its attempt began
        self._inflight.discard(task)
        if not self._inflight:
            self.hub.deliveries_added()  # idle now: look at what is due (a retry, say)

    def _host_done(self, job: Job, latency_s: float | None, overloaded: bool) -> None:
        """The host's slot is free: its waiting deliveries go, unless their lease is running out."""
        ready = self._hosts.done(job.host, latency_s, overloaded)
        late = time.monotonic() - self._start_within_s
        stale = [waiting for waiting in ready if waiting.claimed_at < late or self._stopping]
        for waiting in ready:
            if waiting.claimed_at >= late and not self._stopping:
                self._launch(waiting)
        for waiting in stale:  # they held a slot each: hand it on
            self._host_done(waiting, None, False)
        if stale and self._stopping:
            self._unsent.extend(stale)
        elif stale:
            spawn(self._give_back(stale), "giving back late callbacks")

    # -- one attempt -----------------------------------------------------------------------
    async def _deliver(self, job: Job) -> None:
        """One attempt, recorded; its lines name the task and its trace id."""
        delivery = job.delivery
        trace_id = job.task.trace_id if job.task else None
        with (
            bound_task(delivery.task_id, trace_id, callback=delivery.id),
            tracing.callback_span(delivery, job.traceparent, trace_id),
        ):
            await self._attempt_and_record(job)

    async def _attempt_and_record(self, job: Job) -> None:
        delivery = job.delivery
        attempt_no = delivery.attempts + 1
        started = now_ms()
        clock = time.perf_counter()
        sent: list[float] = []  # when the request went out, once it did
        outcome: Outcome | None = None
        try:
            outcome = await self._attempt(job, sent)
        except asyncio.CancelledError:
            # Stopping: record the attempt so that its lease ends now and the next start (or
            # another sender) retries on schedule instead of waiting the lease out.
            interrupted = Outcome(None, "interrupted: the gateway stopped during the attempt")
            with contextlib.suppress(Exception):
                result = attempt_result(
                    delivery, attempt_no, started, interrupted, None, schedule=self.schedule
                )
                await self.store.record_attempts(self.owner, [(delivery, result)])
            raise
        except Exception as exc:
            # Still an attempt on the schedule: an unrecorded one would hold its lease and loop.
            report(log, f"callback {delivery.id} failed inside the gateway", exc)
            outcome = Outcome(None, "internal error in the gateway while sending")
        finally:
            # The host's slot is free as soon as it answered (recording is the store's business).
            took = time.perf_counter() - sent[0] if sent else None
            self._host_done(job, took, bool(sent) and outcome is not None and outcome.overloaded)
            self._answered(job)
        tracing.answered(outcome.status_code, outcome.error)
        latency_ms = int((time.perf_counter() - clock) * 1000) if outcome.status_code is not None else None
        await self._record(job, attempt_no, started, outcome, latency_ms)

    async def _attempt(self, job: Job, sent: list[float]) -> Outcome:
        delivery = job.delivery
        task = job.task if job.task_read else await self.store.get_task(delivery.task_id)
        if task is None:
            return Outcome(None, "the task no longer exists")
        try:
            target = await resolve_and_check(delivery.url, self.policy, resolver=self._resolver)
        except UnsafeUrl as exc:
            return Outcome(None, f"refused: {exc}", permanent=refused_for_good(delivery.url))
        logs = await self.store.task_logs(task.id) if task.dialect in CALLBACK_LOGS else None
        body = render_callback(task.dialect, task, self.links, logs)
        if isinstance(job.secret, BaseException):
            raise job.secret
        headers = signed_headers(target, delivery.id, body, job.secret)
        headers.update(trace_headers())  # the task's trace id, for the receiver's own logs
        headers.update(tracing.span_headers())  # and the attempt's span, when tracing is on
        sent.append(time.perf_counter())
        return await self._transport.post(target, body, headers)

    # -- recording -------------------------------------------------------------------------
    async def _record(
        self, job: Job, attempt_no: int, started: int, outcome: Outcome, latency_ms: int | None
    ) -> None:
        delivery = job.delivery
        result = attempt_result(delivery, attempt_no, started, outcome, latency_ms, schedule=self.schedule)
        count_attempt(self.metrics, result.state, delivery, latency_ms)
        told = f"HTTP {outcome.status_code}" if outcome.status_code is not None else outcome.error
        log.info("callback %s attempt %d: %s; now %s", delivery.id, attempt_no, told, result.state.value)
        if not await self._records.submit((delivery, result)):
            log.warning("attempt %d of callback %s not recorded: its lease was lost", attempt_no, delivery.id)
        elif result.state is DeliveryState.PENDING:
            self.hub.deliveries_added()  # a retry is due: the sender's next wait counts it

    async def _record_batch(self, batch: Sequence[tuple[Delivery, AttemptResult]]) -> list[bool]:
        return await self.store.record_attempts(self.owner, batch)
