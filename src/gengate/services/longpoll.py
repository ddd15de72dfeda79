"""A long-poll's answer before it is known: the task as read, the deadline, and how the route
turns a task into its `data`.

A status route with `wait=N` returns a :class:`LongPoll` instead of awaiting the change
itself. The server's hot lane parks it (:mod:`gengate.api.parked`): no coroutine waits, and
one fan-out answers every parked poll of a task after its change. Anything else (the
framework's routes, a lane that cannot hold a request) awaits :meth:`LongPoll.settle`, which
waits the way it always did (:meth:`~gengate.services.tasks.TaskService.wait_for_change`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gengate.domain.states import TaskState
from gengate.domain.task import Task

if TYPE_CHECKING:
    from gengate.services.tasks import TaskService

#: Turns the task (and, for routes that show it, its queue position) into the route's `data`.
Render = Callable[[Task, "int | None"], Any]


def _no_render(task: Task, _position: int | None) -> Any:
    raise RuntimeError(f"the long-poll of {task.id} was never given its render")


class LongPoll:
    __slots__ = ("deadline", "position", "read_at", "render", "seen", "task", "tasks")

    def __init__(self, tasks: TaskService, task: Task, wait_s: float, read_at: int) -> None:
        self.tasks = tasks
        #: The task as the request read it; an answer is due once its state or progress differ.
        self.task = task
        self.seen = (task.state, task.progress)
        #: On the loop's clock.
        self.deadline = asyncio.get_running_loop().time() + wait_s
        #: The change hub's clock before that read (:meth:`~gengate.store.notify.ChangeHub.park`).
        self.read_at = read_at
        self.render: Render = _no_render
        #: The render shows a pending task's queue position (a read of its own).
        self.position = False

    def answered_with(self, render: Render, *, position: bool = False) -> LongPoll:
        """The route's render; with `position`, a pending task's queue position is read for it."""
        self.render = render
        self.position = position
        return self

    def concerns(self, task: Task) -> bool:
        """Whether `task` is news to this poll: its state or progress changed."""
        return (task.state, task.progress) != self.seen

    def needs_read(self, task: Task) -> bool:
        """Whether rendering `task` needs a read of its own (a pending task's queue position)."""
        return self.position and task.state is TaskState.PENDING

    async def data(self, task: Task) -> Any:
        """The route's `data` for `task`, with its queue position read where shown."""
        position = await self.tasks.queue_position(task) if self.position else None
        return self.render(task, position)

    async def settle(self) -> Any:
        """The answer, waited for with a coroutine of its own."""
        remaining = self.deadline - asyncio.get_running_loop().time()
        task = await self.tasks.wait_for_change(self.task, max(remaining, 0.0))
        return await self.data(task)


async def settled(value: Any) -> Any:
    """A route's `data`, a long-poll awaited where there is one."""
    return await value.settle() if isinstance(value, LongPoll) else value
