"""A long-poll held by the server's protocol instead of by a coroutine.

10,000 clients long-polling one task used to be 10,000 coroutines, each resumed after the
change to read, render, encode and answer on its own. A parked poll is an object in the
change hub (:meth:`~gengate.store.notify.ChangeHub.park`): after the change one fan-out reads
the task once and wakes every parked poll of it with that value, and the polls of one route
share the body encoded once; each then only adds its own headers and writes. What a poll
cannot share goes its own way with a coroutine of its own: a pending task whose queue
position the route shows (a read of its own). At the deadline a poll takes a last look with
a read of the task that starts then, shared with the polls whose deadlines pass together.

The protocol hands the poll its `respond` (:meth:`ParkedPoll.hold`) and drops it when the
client leaves (:meth:`ParkedPoll.drop`); the request layer hands it `on_end`, told the status
once the request ends (499 when the client left first).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from gengate.deadlines import Bucket, cancel, deadlines_of
from gengate.domain.task import Task
from gengate.server.hot_lane import Headers, with_length
from gengate.services.longpoll import LongPoll

if TYPE_CHECKING:
    from gengate.api.hotpath import Answer, HotRoute

#: The status a request is logged with when its client left before the answer (nginx's).
CLIENT_CLOSED = 499

Respond = Callable[[int, Headers, bytes], None]


def _unset_respond(_status: int, _headers: Headers, _body: bytes) -> None:
    raise RuntimeError("a parked poll answered before it was held")


def _no_end(_status: int) -> None:
    pass


class ParkedPoll:
    __slots__ = (
        "_done",
        "_due",
        "_fail",
        "_headers",
        "_loop",
        "_parked",
        "_poll",
        "_respond",
        "_route",
        "_timer",
        "_work",
        "on_end",
    )

    def __init__(
        self, poll: LongPoll, route: HotRoute, headers: Headers, fail: Callable[[Exception], Answer]
    ) -> None:
        self._poll = poll
        self._route = route
        #: The answer's headers but its length: content type, trace id, the handlers' own.
        self._headers = headers
        #: The answer to an exception on the way (the route's error envelope).
        self._fail = fail
        self._respond: Respond = _unset_respond
        self._loop = asyncio.get_running_loop()
        #: Its deadline's bucket (:mod:`gengate.deadlines`), until it answers.
        self._timer: Bucket | None = None
        #: A coroutine answering it (a pending task's queue position needs a read of its own).
        self._work: asyncio.Task[None] | None = None
        self._done = False
        #: Its deadline passed (or the server stops): the next wake answers, change or not.
        self._due = False
        #: In the hub's parked waiters (out of them while a fan-out wakes it, and once done).
        self._parked = False
        #: Told the status once the request ends (the request layer's line and metrics).
        self.on_end: Callable[[int], None] = _no_end

    # -- the protocol's side -----------------------------------------------------------
    def hold(self, respond: Respond) -> None:
        """Wait for the task's next change, or the deadline; then answer with `respond`."""
        self._respond = respond
        poll = self._poll
        self._timer = deadlines_of(self._loop).add(poll.deadline, self)
        tasks = poll.tasks
        self._parked = True
        tasks.hub.park(poll.task.id, self, tasks.store.get_task, poll.read_at)

    def answer_now(self) -> None:
        """Answer with the task as it stands, without waiting for a change (the server stops)."""
        if not self._done and not self._due:
            self.due()

    def drop(self) -> None:
        """The client left: nothing is answered, and the request ends with 499."""
        if self._done:
            return
        self._finish()
        if self._work is not None:
            self._work.cancel()
        self.on_end(CLIENT_CLOSED)

    # -- the change hub's side -----------------------------------------------------------
    def wake(self, task: Task | None, shared: dict[Any, Any]) -> bool:
        if self._done:
            return True
        poll = self._poll
        waits = not self._due and self._loop.time() < poll.deadline
        if waits and task is not None and not poll.concerns(task):
            return False  # a change that is not news to this poll (another field)
        self._parked = False  # (the hub took it out of its parked waiters)
        self._answer(task or poll.task, shared)  # (gone from the store: as last seen)
        return True

    def read_failed(self, error: Exception) -> None:
        if not self._done:
            self._parked = False
            self._send(*self._fail(error))

    # -- answering ------------------------------------------------------------------------
    def _answer(self, task: Task, shared: dict[Any, Any]) -> None:
        poll = self._poll
        if self._work is not None:
            return  # answering already, with a read of its own
        if poll.needs_read(task):
            self._run(self._answer_alone(task))
            return
        key = (self._route, poll.render)
        body: bytes | None = shared.get(key)
        if body is None:
            try:
                body = self._route.encode(poll.render(task, None))
            except Exception as exc:
                self._send(*self._fail(exc))
                return
            shared[key] = body
        self._send_body(body)

    async def _answer_alone(self, task: Task) -> None:
        try:
            body = self._route.encode(await self._poll.data(task))
        except Exception as exc:
            self._send(*self._fail(exc))
            return
        self._send_body(body)

    def _send_body(self, body: bytes) -> None:
        self._send(self._route.ok, with_length(self._headers, body), body)

    def due(self) -> None:
        """The deadline: a last look at the task (a read that starts now, shared with the
        polls of the task whose deadlines pass with this one), then the answer."""
        cancel(self._timer, self)
        self._timer = None
        if self._done:
            return
        self._due = True
        self._parked = False
        tasks = self._poll.tasks
        tasks.hub.look_again(self._poll.task.id, self, tasks.store.get_task)

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        self._work = self._loop.create_task(work)

    def _send(self, status: int, headers: Headers, body: bytes) -> None:
        if self._done:  # (dropped while a coroutine of its own ran)
            return
        self._finish()
        self.on_end(status)
        self._respond(status, headers, body)

    def _finish(self) -> None:
        self._done = True
        cancel(self._timer, self)
        self._timer = None
        self._unpark()

    def _unpark(self) -> None:
        if self._parked:
            self._parked = False
            self._poll.tasks.hub.unpark(self._poll.task.id, self)
