"""Submitting and reading tasks: the one place a route's request becomes a stored task."""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from gengate.domain.catalogue import Catalogue
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import Delivery
from gengate.domain.dialect import Dialect
from gengate.domain.errors import BadRequest, Forbidden, TaskNotFound, TokenMismatched, Unavailable
from gengate.domain.ids import new_task_id
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.net.guard import AddressPolicy, UnsafeUrl, resolve_and_check
from gengate.observability import tracing
from gengate.observability.context import note_task
from gengate.observability.metrics_tasks import TaskMetrics
from gengate.services.longpoll import LongPoll
from gengate.services.moderation import Moderator
from gengate.services.queue_gauge import QueueGauge
from gengate.store.base import Admission, Idempotency, Store, TaskQuery
from gengate.store.notify import ChangeHub

log = logging.getLogger(__name__)

REQUEST_TYPES = ("async", "sync", "callback")
MAX_IDEMPOTENCY_KEY = 255
#: How long a cancel of a running task waits for its worker to stop before answering.
CANCEL_WAIT_S = 5.0


def request_hash(dialect: str, model: str, request: dict[str, Any]) -> str:
    """What makes two submits "the same request": route, model and body, key order aside."""
    canonical = orjson.dumps([dialect, model, request], option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()


def price_of(price: int, value: dict[str, Any]) -> int:
    """Credits a task costs: the model's price per output, times `n` outputs where asked."""
    n = value.get("n", 1)
    return price * n if isinstance(n, int) and n > 1 else price


def _canceled(task: Task) -> bool:
    return task.state is TaskState.FAILED and task.fail_code == "CANCELED"


class TaskService:
    def __init__(
        self,
        store: Store,
        hub: ChangeHub,
        catalogue: Catalogue,
        callback_policy: AddressPolicy,
        *,
        moderator: Moderator | None = None,
        max_queue_depth: int | None = None,
        metrics: TaskMetrics | None = None,
    ) -> None:
        self.store = store
        self.hub = hub
        self.catalogue = catalogue
        self.callback_policy = callback_policy
        self.moderator = moderator
        #: Pending tasks of a model past which submits are refused, unless the model sets its own.
        self.max_queue_depth = max_queue_depth
        self._queue = QueueGauge(store)
        self.metrics = metrics

    @tracing.traced("gengate.submit")
    async def submit(
        self,
        key: ApiKey,
        model: str,
        raw_input: Any,
        *,
        request: dict[str, Any],
        request_type: str = "async",
        callback_url: str | None = None,
        trace_id: str | None = None,
        dialect: Dialect = Dialect.APIXO,
        idempotency_key: str | None = None,
        priority: int = 0,
    ) -> Task:
        """Validate, moderate, charge and store a task; it is durable when this returns. With an
        `idempotency_key` already used for the same request in the last 24 h, the task made
        then is returned instead (not charged again); used for another request, `conflict`.
        The key's concurrency cap and its credits are checked by the store in the insert's
        transaction, and so is the model's queue cap when the queue is near it. Workers claim
        higher `priority` first (fal's `low` queue priority is -1)."""
        spec = self.catalogue.get(model)
        if key.models is not None and model not in key.models:
            raise TokenMismatched(f"This key is not allowed to use model '{model}'.")
        if request_type not in REQUEST_TYPES:
            raise BadRequest(f"`request_type` must be one of: {', '.join(REQUEST_TYPES)}.")
        if request_type == "callback" and not callback_url:
            raise BadRequest("`callback_url` is required with request_type `callback`.")
        validated = self.catalogue.validate_input(spec, raw_input)
        if callback_url is not None:
            try:
                await resolve_and_check(callback_url, self.callback_policy)
            except UnsafeUrl as exc:
                raise BadRequest(f"callback_url: {exc}") from None
        await self._moderate(spec.id, validated.mode, validated.value)
        task = Task(
            id=new_task_id(),
            key_id=key.id,
            model=spec.id,
            mode=validated.mode,
            state=TaskState.PENDING,
            input_json=orjson.dumps(validated.value).decode(),
            request_json=orjson.dumps(request).decode(),
            request_type=request_type,
            callback_url=callback_url,
            create_time=now_ms(),
            trace_id=trace_id,
            trace_context=tracing.traceparent_of(),
            dialect=dialect,
            charge=price_of(spec.price, validated.value),
            priority=priority,
        )
        idempotency = None
        if idempotency_key is not None:
            if not 0 < len(idempotency_key) <= MAX_IDEMPOTENCY_KEY or not idempotency_key.isprintable():
                raise BadRequest(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY} printable characters.")
            idempotency = Idempotency(idempotency_key, request_hash(dialect, spec.id, request))
        cap = spec.max_queue if spec.max_queue is not None else self.max_queue_depth
        # The exact count is made in the insert's transaction, but only near the cap.
        exact = cap is not None and await self._queue.near(spec.id, cap)
        admission = Admission(max_queue=cap if exact else None, max_concurrent=key.max_concurrent)
        stored = await self.store.insert_task(task, idempotency, admission)
        note_task(stored.id)
        tracing.annotate_task(stored)
        self._queue.added(spec.id)
        if self.metrics is not None and stored.id == task.id:  # not an idempotent replay
            self.metrics.task_submitted(stored)
        return stored

    async def _moderate(self, model: str, mode: str, value: dict[str, Any]) -> None:
        """The moderation hook: `forbidden` when it refuses; when it fails, `unavailable`
        (an input nobody could judge is not accepted)."""
        if self.moderator is None:
            return
        try:
            verdict = await self.moderator.check(model, mode, value)
        except Exception:
            log.exception("the moderation hook failed")
            raise Unavailable("Content moderation is unavailable; retry later.", retry_after_s=5) from None
        if not verdict.allowed:
            raise Forbidden(verdict.reason or None)

    async def list(self, key: ApiKey, query: TaskQuery) -> list[Task]:
        return await self.store.list_tasks(key.id, query)

    async def queue_position(self, task: Task) -> int | None:
        """How many pending tasks of its model are ahead of a pending task; None otherwise."""
        if task.state is not TaskState.PENDING:
            return None
        return await self.store.queue_position(task)

    async def get(self, key: ApiKey, task_id: str, model: str | None = None) -> Task:
        """The key's own task; another key's task is "not found", never "forbidden". Asked
        through another model's path, the key's own task is not found there either, and the
        message says which model it belongs to (only its own key ever learns that)."""
        task = await self.store.get_task(task_id) if task_id else None
        if task is None or task.key_id != key.id:
            raise TaskNotFound(f"Task '{task_id}' does not exist for this key.")
        if model is not None and task.model != model:
            raise TaskNotFound(
                f"Task '{task_id}' belongs to model '{task.model}', not '{model}'; "
                f"use the path of model '{task.model}'."
            )
        note_task(task.id)
        return task

    async def poll(self, key: ApiKey, task_id: str, model: str | None, wait_s: float) -> Task | LongPoll:
        """The key's task (:meth:`get`), or, with a wait and the task not ended, the long-poll
        that answers at its next change (:mod:`gengate.services.longpoll`)."""
        read_at = self.hub.clock
        task = await self.get(key, task_id, model)
        if wait_s <= 0 or task.state.is_terminal():
            return task
        return LongPoll(self, task, wait_s, read_at)

    async def cancel(self, key: ApiKey, task_id: str, model: str | None = None) -> tuple[Task, bool]:
        """Cancel the key's task: the task as it then stands, and whether anything changed
        (False for a task that had already finished)."""
        task = await self.get(key, task_id, model)
        if task.state.is_terminal():
            return task, False
        current = await self.store.cancel(task.id)
        if current is None:
            raise TaskNotFound(f"Task '{task_id}' does not exist for this key.")
        if self.metrics is not None and task.state is TaskState.PENDING and _canceled(current):
            self.metrics.task_ended(current)  # ended here, before any worker saw it
        if current.state is TaskState.PROCESSING:
            # The worker stops the provider within its grace period; answer with the end if it
            # comes soon, else with the state as it stands.
            current = await self.wait_until_done(current, CANCEL_WAIT_S)
        return current, _canceled(current)

    async def deliveries(self, key: ApiKey, task_id: str) -> tuple[Task, Sequence[Delivery]]:
        """The key's task and the callbacks it owed, oldest first, each with its attempts."""
        task = await self.get(key, task_id)
        return task, await self.store.deliveries_of_task(task.id)

    async def redeliver(self, key: ApiKey, task_id: str) -> tuple[Task, Delivery]:
        """Send the task's latest callback again (same `webhook-id`, fresh schedule)."""
        task, deliveries = await self.deliveries(key, task_id)
        if not deliveries:
            raise BadRequest(
                "This task has no callback to deliver: it had no callback_url or is not finished."
            )
        latest = deliveries[-1]
        if not await self.store.redeliver(latest.id):
            raise BadRequest("The callback is still being delivered; wait for it to end before redelivering.")
        return task, latest

    async def wait_for_change(self, task: Task, wait_s: float) -> Task:
        """Long-poll: the task as soon as its state or progress differs from `task`, or as it
        stands after `wait_s` seconds. Waiting costs a future and no CPU, and the waiters of a
        task share one read after each change (:class:`~gengate.store.notify.TaskFollower`)."""
        if task.state.is_terminal() or wait_s <= 0:
            return task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        seen = (task.state, task.progress)
        with self.hub.follow(task.id) as follower:
            while True:
                current = await follower.read(self.store.get_task)
                if current is None:  # removed under us: report what we last saw
                    return task
                if (current.state, current.progress) != seen or loop.time() >= deadline:
                    return current
                if not await follower.wait(deadline):
                    # The deadline: a last look of our own, then the task as it stands.
                    return await follower.read(self.store.get_task) or task

    async def changes(self, task: Task, keepalive_s: float) -> AsyncIterator[Task | None]:
        """A stream's view of a task: `task`, then the task after each state or progress change
        until it ends; None after each `keepalive_s` without one (time for a keep-alive)."""
        yield task
        while not task.state.is_terminal():
            current = await self.wait_for_change(task, keepalive_s)
            if (current.state, current.progress) == (task.state, task.progress):
                yield None
                continue
            task = current
            yield task

    async def wait_until_done(self, task: Task, wait_s: float) -> Task:
        """The task once terminal, or as it stands when `wait_s` seconds have passed."""
        if task.state.is_terminal():
            return task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        with self.hub.follow(task.id) as follower:
            while True:
                current = await follower.read(self.store.get_task)
                if current is None:  # removed under us: report what we last saw
                    return task
                task = current
                if task.state.is_terminal() or loop.time() >= deadline:
                    return task
                if not await follower.wait(deadline):
                    return await follower.read(self.store.get_task) or task
