"""A pool of worker slots in one process: claim, run, heartbeat, reap.

One dispatcher claims as many tasks as there are free slots (per model too), in one
batch, and starts a coroutine per task. Each run holds a lease that a heartbeat renews;
a run whose lease was lost is stopped, and the store refuses its late completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field

from gengate.background import report, spawn
from gengate.domain.catalogue import Catalogue
from gengate.domain.clock import now_ms
from gengate.domain.task import Claim
from gengate.files.base import FileStore
from gengate.observability import tracing
from gengate.observability.context import bound_task
from gengate.observability.metrics_tasks import TaskMetrics
from gengate.providers.base import Provider
from gengate.store.base import Lease, ReapedTask, Store
from gengate.store.notify import ChangeHub
from gengate.worker.run import TaskRun

log = logging.getLogger(__name__)

#: Most tasks one claim takes; bounds the batch a single transaction moves.
CLAIM_BATCH = 64
#: Longest a busy dispatcher waits for more slots to free up before it claims.
CLAIM_COALESCE_S = 0.005


@dataclass(slots=True)
class _Running:
    claim: Claim
    task: asyncio.Task[None]
    run: TaskRun


@dataclass
class WorkerPool:
    store: Store
    hub: ChangeHub
    catalogue: Catalogue
    providers: Mapping[str, Provider]
    files: FileStore
    slots: int = 8
    lease_ms: int = 30_000
    #: The slow poll behind notifications: how long the dispatcher sleeps with nothing to do.
    idle_poll_s: float = 1.0
    owner: str = field(default_factory=lambda: "w_" + secrets.token_hex(6))
    metrics: TaskMetrics | None = None
    _running: dict[str, _Running] = field(default_factory=dict)
    _loops: list[asyncio.Task[None]] = field(default_factory=list)
    _stopping: bool = False
    _slot_freed: asyncio.Event = field(default_factory=asyncio.Event)
    #: The last claim may have left work it could not take (it took all it asked for, or a
    #: model was at its concurrency or cap): a freed slot claims again. Otherwise the queue
    #: held nothing more for this pool, and new work wakes the dispatcher itself.
    _work_left: bool = True

    async def start(self) -> None:
        self.hub.on_cancel(self._cancel_requested)
        self._loops = [
            spawn(self._dispatch(), "the worker's dispatcher", name="gengate-dispatch"),
            spawn(self._heartbeat(), "the worker's heartbeat", name="gengate-heartbeat"),
            spawn(self._reap(), "the worker's reaper", name="gengate-reaper"),
        ]

    async def stop(self, grace_s: float = 10.0) -> None:
        """Stop claiming; let running tasks finish for `grace_s`, then hand the rest back."""
        self._stopping = True
        self.hub.work_added()
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        running = list(self._running.values())
        if running:
            await asyncio.wait([r.task for r in running], timeout=grace_s)
        unfinished = [r for r in running if not r.task.done()]
        for left in unfinished:
            left.task.cancel()
        await asyncio.gather(*(r.task for r in unfinished), return_exceptions=True)
        for left in unfinished:
            task = left.claim.task
            await self.store.release(task.id, self.owner, left.claim.attempt)
            with bound_task(task.id, task.trace_id, attempt=left.claim.attempt):
                log.info("task %s handed back to the queue: this worker is stopping", task.id)
        self._running.clear()

    def _cancel_requested(self, task_id: str) -> None:
        running = self._running.get(task_id)
        if running is not None:
            running.run.request_cancel()

    @property
    def busy(self) -> int:
        return len(self._running)

    # -- loops -------------------------------------------------------------------
    async def _dispatch(self) -> None:
        while not self._stopping:
            try:
                await self._let_slots_free_up()
                again = await self._claim_once()
            except Exception as exc:
                report(log, "claiming tasks failed (trying again)", exc)
                again = False
                await asyncio.sleep(self.idle_poll_s)
            if not again and not self._stopping:
                await self.hub.wait_work(self.idle_poll_s)

    async def _let_slots_free_up(self) -> None:
        """When nearly every slot is busy, wait a moment for more to free up, so that one claim
        takes several tasks: claiming each freed slot on its own spends a store round trip per
        task, and a busy queue then drains at the pace of those round trips."""
        threshold = max(1, min(self.slots, CLAIM_BATCH) // 4)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + CLAIM_COALESCE_S
        while self._running and self.slots - len(self._running) < threshold and not self._stopping:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._slot_freed.clear()
            try:
                async with asyncio.timeout(remaining):
                    await self._slot_freed.wait()
            except TimeoutError:
                return

    async def _claim_once(self) -> bool:
        """Claim for the free slots; whether to claim again at once (it took all it asked for).

        A claim that took less found the queue empty for this pool as it stands: claiming again
        then, or at each end of a run, was a store round trip that found nothing (three claims a
        task at a moderate rate)."""
        free = self.slots - len(self._running)
        if free <= 0:
            self._work_left = True
            return False
        per_model: dict[str, int] = {}
        for run in self._running.values():
            per_model[run.claim.task.model] = per_model.get(run.claim.task.model, 0) + 1
        capacity = {
            spec.id: spec.concurrency - per_model.get(spec.id, 0)
            for spec in self.catalogue
            if spec.provider in self.providers
        }
        caps = {spec.id: spec.max_running for spec in self.catalogue if spec.max_running is not None}
        started = tracing.claim_started()
        asked = min(free, CLAIM_BATCH)
        claims = await self.store.claim(capacity, self.owner, asked, self.lease_ms, caps)
        for claim in claims:
            self._start(claim, started)
            capacity[claim.task.model] -= 1  # a claim takes only the models it was offered
        self._work_left = len(claims) == asked or bool(caps) or min(capacity.values(), default=0) <= 0
        return len(claims) == asked

    def _start(self, claim: Claim, claimed_ns: int | None = None) -> None:
        spec = self.catalogue.get(claim.task.model)
        run = TaskRun(
            claim=claim,
            spec=spec,
            provider=self.providers[spec.provider],
            store=self.store,
            files=self.files,
            owner=self.owner,
            metrics=self.metrics,
            trace_parent=tracing.claim_span(claim.task, claim.attempt, self.owner, claimed_ns),
        )
        # A run that fails to record its end (a full disk) keeps its lease until it lapses; then
        # the reaper queues the task again. The failure is told once, here.
        task = spawn(run.execute(), f"run of task {claim.task.id}", name=f"gengate-run-{claim.task.id}")
        self._running[claim.task.id] = _Running(claim, task, run)
        task.add_done_callback(functools.partial(self._finished, claim.task.id))

    def _finished(self, task_id: str, _done: asyncio.Task[None]) -> None:
        if self._running.pop(task_id, None) is not None and not self._stopping:
            self._slot_freed.set()
            if self._work_left:
                self.hub.work_added()

    async def _heartbeat(self) -> None:
        interval = self.lease_ms / 3000
        while True:
            await asyncio.sleep(interval)
            running = list(self._running.values())
            # All at once: the store commits them together.
            beats = await asyncio.gather(
                *(
                    self.store.heartbeat(r.claim.task.id, self.owner, r.claim.attempt, self.lease_ms)
                    for r in running
                ),
                return_exceptions=True,
            )
            for run, lease in zip(running, beats, strict=True):
                task = run.claim.task
                with bound_task(task.id, task.trace_id, attempt=run.claim.attempt):
                    if isinstance(lease, BaseException):
                        log.error("heartbeat failed for %s: %s", task.id, lease)
                    elif lease is Lease.CANCEL_REQUESTED:
                        log.info("task %s was canceled: stopping its run", task.id)
                        run.run.request_cancel()  # canceled through another process
                    elif lease is Lease.LOST and not run.run.finishing and not run.task.done():
                        log.warning("lease on %s was lost; stopping its run", task.id)
                        run.run.lose_lease()

    def _count_reaped(self, reaped: ReapedTask) -> None:
        if self.metrics is None:
            return
        if reaped.ended is not None:
            self.metrics.task_ended(reaped.ended)
        elif reaped.requeued:
            self.metrics.task_requeued(reaped.model)

    async def _reap(self) -> None:
        interval = max(self.lease_ms / 2000, 0.5)
        while True:
            with contextlib.suppress(Exception):
                max_attempts = {spec.id: spec.max_attempts for spec in self.catalogue}
                for reaped in await self.store.reap_expired(now_ms(), max_attempts):
                    self._count_reaped(reaped)
                    # A task that failed here is at hand with its trace id; one queued again is not.
                    trace_id = reaped.ended.trace_id if reaped.ended is not None else None
                    with bound_task(reaped.task_id, trace_id):
                        log.warning(
                            "task %s lost its worker; %s",
                            reaped.task_id,
                            "queued again" if reaped.requeued else "failed WORKER_LOST",
                        )
            await asyncio.sleep(interval)
