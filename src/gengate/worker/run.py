"""One run of one task: the provider under timeout and cancel, then one fenced completion."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from opentelemetry.context import Context

from gengate.background import spawn
from gengate.deadlines import SharedTimeout
from gengate.dialects import LOGS, START, callback_on
from gengate.domain.catalogue import ModelSpec
from gengate.domain.clock import now_ms
from gengate.domain.endings import (
    CANCELED_MESSAGE,
    Failed,
    Outcome,
    Succeeded,
    canceled,
    internal_error,
    timed_out,
)
from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.domain.task import Claim, ResultFile
from gengate.files.base import FileStore
from gengate.observability import tracing
from gengate.observability.context import bound_task
from gengate.observability.metrics_tasks import TaskMetrics
from gengate.providers.base import Provider, ProviderFailure, RunContext
from gengate.store.base import Store
from gengate.worker.run_log import RunLog

log = logging.getLogger(__name__)

#: How long a provider may take to notice a cancel before its run is stopped outright.
CANCEL_GRACE_S = 2.0
#: The longest wait before another attempt after a transient failure.
MAX_RETRY_DELAY_S = 300.0


def retry_delay_ms(attempt: int, base_s: float) -> int:
    """Exponential backoff with full jitter after failed attempt `attempt` (from 1): spreads the
    retries of many tasks that failed together (an upstream outage) instead of herding them."""
    ceiling = min(MAX_RETRY_DELAY_S, base_s * 2 ** (attempt - 1))
    return int(1000 * random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter, not a secret


@dataclass
class TaskRun:
    claim: Claim
    spec: ModelSpec
    provider: Provider
    store: Store
    files: FileStore
    owner: str
    metrics: TaskMetrics | None = None
    #: The context of the claim's span, the run's parent (None: tracing is off).
    trace_parent: Context | None = None
    _lost: bool = False
    _canceled: bool = False
    _transient: bool = False
    #: Set once the outcome is on its way to the store: the lease ends with it, so a
    #: heartbeat refused from then on means "finished", not "lost".
    finishing: bool = False
    _progress_sent: int | None = None
    _progress_wanted: int | None = None
    _progress_writer: asyncio.Task[None] | None = None
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    _log: RunLog | None = None

    #: The run's task while the provider runs in it (the provider has no task of its own).
    _in_provider: asyncio.Task[Any] | None = None
    _hard_stop: asyncio.TimerHandle | None = None
    _hard_stopped: bool = False
    #: Whether the hard stop cancelled the run's task, to be taken back once it has landed.
    _stop_sent: bool = False

    def request_cancel(self) -> None:
        """The client canceled: the provider is told, and stopped outright after a grace period."""
        self._canceled = True
        self._stop_soon()

    def lose_lease(self) -> None:
        """Another worker may own the task now: stop work; the store will refuse our result."""
        self._lost = True
        self._stop_soon()

    def _stop_soon(self) -> None:
        """Tell the provider (`ctx.cancel`), and stop its run outright `CANCEL_GRACE_S` later if
        it has not ended by then. A timer, not a task per run: most runs are never canceled."""
        self.cancel.set()
        if self._hard_stop is None:
            self._hard_stop = asyncio.get_running_loop().call_later(CANCEL_GRACE_S, self._stop_now)

    def _stop_now(self) -> None:
        self._hard_stopped = True
        # The cancel lands where the task waits now: inside the provider, since only the task's
        # own code (run synchronously after the provider returns) clears `_in_provider`.
        if self._in_provider is not None and not self._stop_sent:
            self._stop_sent = True
            self._in_provider.cancel()

    async def execute(self) -> None:
        """Run the claim; every line logged meanwhile (the provider's upstream calls and file
        saves included) names the task, its trace id and the attempt."""
        task = self.claim.task
        with (
            bound_task(task.id, task.trace_id, attempt=self.claim.attempt),
            tracing.run_span(self.trace_parent, task, self.claim.attempt, self.spec.provider),
        ):
            log.info(
                "claimed task %s of model %s for %s (attempt %d)",
                task.id,
                task.model,
                self.spec.provider,
                self.claim.attempt,
            )
            try:
                await self._execute()
            finally:
                if self._hard_stop is not None:
                    self._hard_stop.cancel()

    async def _execute(self) -> None:
        task = self.claim.task
        if self.metrics is not None:
            self.metrics.task_claimed(task, self.spec.provider)
        if callback_on(task, START):
            await self._start_callback()
        started = time.perf_counter()
        outcome = await self._outcome()
        tracing.run_ended(outcome)
        if self.metrics is not None:
            self.metrics.task_ran(task.model, self.spec.provider, time.perf_counter() - started)
        if self._lost:
            return
        if self._canceled:  # however the run ended, the client asked for nothing more
            outcome = canceled()
        self.finishing = True
        if self._log is not None:  # the whole log is in before the task ends
            await self._log.flush()
        if self._transient and self.claim.attempt < self.spec.max_attempts and not self._canceled:
            delay_ms = retry_delay_ms(self.claim.attempt, self.spec.retry_backoff_s)
            if await self.store.retry_later(task.id, self.owner, self.claim.attempt, now_ms() + delay_ms):
                log.info(
                    "task %s failed transiently; attempt %d in %d ms",
                    task.id,
                    self.claim.attempt + 1,
                    delay_ms,
                )
            self._stop_progress()
            return
        recorded = await self.store.finish(
            task.id, self.owner, self.claim.attempt, outcome, callback=bool(task.callback_url), claimed=task
        )
        if recorded is None:
            log.warning("completion of %s refused: the claim is no longer ours", task.id)
        else:
            ending = f" ({recorded.fail_code}): {recorded.fail_msg}" if recorded.fail_code else ""
            log.info("task %s ended %s%s", task.id, recorded.state.value, ending)
            if self.metrics is not None:
                self.metrics.task_ended(recorded)
        self._stop_progress()

    async def _start_callback(self) -> None:
        """Owe the task's callback URL a delivery now that it runs (Replicate's `start` event),
        written before the provider starts: a claim lost before this is retried by the next
        one, which owes it then. A store that fails here fails the finish too; the run goes on."""
        task = self.claim.task
        try:
            await self.store.add_start_callback(task.id, self.owner, self.claim.attempt)
        except Exception:
            log.exception("the start callback of task %s was not recorded", task.id)

    def _stop_progress(self) -> None:
        if self._progress_writer is not None:
            self._progress_writer.cancel()
        if self._log is not None:
            self._log.stop()

    @property
    def _run_log(self) -> RunLog:
        """The log and output of this claim, made when the provider first uses them."""
        if self._log is None:
            task = self.claim.task
            self._log = RunLog(
                self.store, task.id, self.owner, self.claim.attempt, callback_logs=callback_on(task, LOGS)
            )
        return self._log

    def _add_log(self, text: str) -> None:
        self._run_log.add(text)

    def _set_output(self, value: Any) -> None:
        self._run_log.set_output(value)

    async def _outcome(self) -> Outcome:
        task = self.claim.task
        # File-system calls stay off the event loop: on a busy disk one mkdir can take a millisecond.
        if getattr(self.provider, "writes_files", True):
            output_dir = await asyncio.to_thread(self.files.staging_dir, task.id, self.claim.attempt)
        else:
            output_dir = self.files.staging_path(task.id, self.claim.attempt)
        ctx = RunContext(
            task_id=task.id,
            model=task.model,
            mode=task.mode,
            output_dir=output_dir,
            options=self.spec.options,
            attempt=self.claim.attempt,
            cancel=self.cancel,
            on_progress=self._progress,
            on_upstream=self._upstream,
            on_log=self._add_log,
            on_output=self._set_output,
        )
        try:
            with SharedTimeout(self.spec.timeout_s) as deadline:
                outputs = await self._run_provider(ctx)
            if deadline.expired():  # the provider caught the timeout's cancel and returned anyway
                return timed_out(self.spec.timeout_s)
            return Succeeded(await self._save(task.id, outputs), self._log.output_json if self._log else None)
        except ProviderFailure as failure:
            self._transient = failure.transient
            return Failed(failure.fail_code, failure.message)
        except TimeoutError:
            if deadline.expired():
                return timed_out(self.spec.timeout_s)
            return self._internal_error()
        except Exception:
            return self._internal_error()

    async def _save(self, task_id: str, outputs: Sequence[OutputFile]) -> tuple[ResultFile, ...]:
        started = time.perf_counter()
        saved = await self.files.save(task_id, outputs, first_attempt=self.claim.attempt == 1)
        took = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.file_save.observe(took)
        log.info(
            "saved %d result file(s) of task %s, %d bytes, in %.1f ms",
            len(saved),
            task_id,
            sum(file.size for file in saved),
            took * 1000,
        )
        return saved

    async def _run_provider(self, ctx: RunContext) -> Sequence[OutputFile]:
        """The provider's run, stopped outright `CANCEL_GRACE_S` after a cancel it ignores.

        It runs in the run's own task, not in a task of its own, which cost every run a task's
        creation, scheduling and wake-up. The hard stop cancels this task while the provider
        runs, and takes its cancel back (`uncancel`) once it has landed, so that a cancel from
        outside (the model's timeout, the pool stopping) still goes on up.
        """
        if self._hard_stopped:
            raise ProviderFailure(FailCode.CANCELED, CANCELED_MESSAGE)
        task = asyncio.current_task()
        assert task is not None
        self._in_provider = task
        taken_back = False
        try:
            return await self.provider.run(self.claim.task.input, ctx)
        except asyncio.CancelledError:
            if self._stop_sent:
                taken_back = True
                if task.uncancel() == 0:
                    raise ProviderFailure(FailCode.CANCELED, CANCELED_MESSAGE) from None
            raise
        finally:
            self._in_provider = None
            if self._stop_sent and not taken_back:  # the provider swallowed the stop
                task.uncancel()

    def _internal_error(self) -> Failed:
        task = self.claim.task
        log.exception("task %s (trace_id %s) failed inside the gateway", task.id, task.trace_id)
        return internal_error(task.trace_id)

    def _upstream(self, upstream_id: str, trace_id: str | None) -> None:
        """Keep a relayed task's upstream reference with the task (fenced like progress)."""
        reference = orjson.dumps(
            {"provider": self.spec.provider, "taskId": upstream_id, "traceId": trace_id}
        ).decode()
        log.info("task %s is upstream task %s (trace %s)", self.claim.task.id, upstream_id, trace_id)
        spawn(
            self.store.set_upstream(self.claim.task.id, self.owner, self.claim.attempt, reference),
            f"keeping the upstream reference of task {self.claim.task.id}",
        )

    # -- progress: coalesced, one write in flight at a time -------------------------------
    def _progress(self, percent: int) -> None:
        self._progress_wanted = percent
        if self._progress_writer is None or self._progress_writer.done():
            self._progress_writer = spawn(
                self._write_progress(), f"progress update of task {self.claim.task.id}"
            )

    async def _write_progress(self) -> None:
        while self._progress_wanted is not None and self._progress_wanted != self._progress_sent:
            wanted = self._progress_wanted
            await self.store.set_progress(self.claim.task.id, self.owner, self.claim.attempt, wanted)
            self._progress_sent = wanted
