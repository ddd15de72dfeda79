"""Submitting and reading tasks: the one place a route's request becomes a stored task."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson

from gengate.domain.catalogue import Catalogue
from gengate.domain.clock import now_ms
from gengate.domain.errors import BadRequest, TaskNotFound, TokenMismatched
from gengate.domain.ids import new_task_id
from gengate.domain.keys import ApiKey
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store.base import Store
from gengate.store.notify import ChangeHub
from gengate.webhooks.ssrf import AddressPolicy, UnsafeUrl, resolve_and_check

REQUEST_TYPES = ("async", "sync", "callback")
#: How long a cancel of a running task waits for its worker to stop before answering.
CANCEL_WAIT_S = 5.0


class TaskService:
    def __init__(
        self, store: Store, hub: ChangeHub, catalogue: Catalogue, callback_policy: AddressPolicy
    ) -> None:
        self.store = store
        self.hub = hub
        self.catalogue = catalogue
        self.callback_policy = callback_policy

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
        dialect: str = "apixo",
    ) -> Task:
        """Validate and store a task; it is durable when this returns."""
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
            dialect=dialect,
        )
        await self.store.insert_task(task)
        return task

    async def get(self, key: ApiKey, task_id: str, model: str | None = None) -> Task:
        """The key's own task; another key's task is "not found", never "forbidden"."""
        task = await self.store.get_task(task_id) if task_id else None
        if task is None or task.key_id != key.id or (model is not None and task.model != model):
            raise TaskNotFound(f"Task '{task_id}' does not exist for this key.")
        return task

    async def cancel(self, key: ApiKey, task_id: str, model: str | None = None) -> tuple[Task, bool]:
        """Cancel the key's task: the task as it then stands, and whether anything changed
        (False for a task that had already finished)."""
        task = await self.get(key, task_id, model)
        if task.state.is_terminal():
            return task, False
        current = await self.store.cancel(task.id)
        if current is None:
            raise TaskNotFound(f"Task '{task_id}' does not exist for this key.")
        if current.state is TaskState.PROCESSING:
            # The worker stops the provider within its grace period; answer with the end if it
            # comes soon, else with the state as it stands.
            current = await self.wait_until_done(current, CANCEL_WAIT_S)
        return current, current.state is TaskState.FAILED and current.fail_code == "CANCELED"

    async def wait_for_change(self, task: Task, wait_s: float) -> Task:
        """Long-poll: the task as soon as its state or progress differs from `task`, or as it
        stands after `wait_s` seconds. Waiting costs a future and no CPU."""
        if task.state.is_terminal() or wait_s <= 0:
            return task
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        seen = (task.state, task.progress)
        while True:
            waiter = self.hub.watch(task.id)
            try:
                current = await self.store.get_task(task.id)
                if current is None:
                    return task
                remaining = deadline - loop.time()
                if (current.state, current.progress) != seen or remaining <= 0:
                    return current
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
            finally:
                self.hub.unwatch(task.id, waiter)

    async def wait_until_done(self, task: Task, wait_s: float) -> Task:
        """The task once terminal, or as it stands when `wait_s` seconds have passed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while not task.state.is_terminal():
            waiter = self.hub.watch(task.id)
            try:
                current = await self.store.get_task(task.id)
                if current is None:  # removed under us: report what we last saw
                    return task
                task = current
                remaining = deadline - loop.time()
                if task.state.is_terminal() or remaining <= 0:
                    return task
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, remaining)
            finally:
                self.hub.unwatch(task.id, waiter)
        return task
