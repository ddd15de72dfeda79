"""In-process wake-ups: who waits on a task, and workers waiting for work.

Waiting costs a future in a dict and no CPU; a change wakes exactly the waiters of that
task. The SQLite store calls it after each commit; a networked store feeds it from its
own notifications (PostgreSQL LISTEN/NOTIFY).

Waiters of one task share their reads of it (10,000 long-polls woken by one change make
one read, not 10,000). What makes that safe is one rule on a clock of the hub that ticks
on every change (a watched task's version is the stamp of its last change): a read may
answer a waiter only if it started once the hub had heard of every change that waiter must
see. A change is heard after its commit (in this process, or from another one through a
notification), so such a read sees it; a read that started earlier, even one that ends
later, may not, and is never used for it. Beginning to follow a task ticks the clock too:
a caller's first look is a read that began after it, never older than its own last read.

A waiter may also be parked (:meth:`ChangeHub.park`): an object, not a coroutine, woken with
the task itself. After a change one fan-out reads the task once for all the task's parked
waiters and hands each the same value (10,000 long-polls answered cost one read and no
coroutine resumed each); a waiter the change does not concern is parked again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar, cast

T = TypeVar("T")
log = logging.getLogger(__name__)

#: A waiter's wake-up: True for a change, False for its deadline.
_CHANGED, _EXPIRED = True, False
#: Waiters of a change woken per turn of the loop.
WAKE_BATCH = 256
#: Tasks no one watched whose last change the hub remembers (for :meth:`ChangeHub.park`);
#: past this many it forgets them all, and a park older than that reads once to be sure.
RECENT_KEPT = 65_536


class Parked(Protocol):
    """A waiter held without a coroutine (:meth:`ChangeHub.park`)."""

    def wake(self, task: Any, shared: dict[Any, Any]) -> bool:
        """The task as read after a change (None: it is gone): True once the waiter is done
        with it, False to stay parked until the next change. `shared` is one dict per read,
        for what the read's waiters can share (a body built once)."""

    def read_failed(self, error: Exception) -> None:
        """The read after a change failed: the waiter is done (it answers with the error, as
        a request whose own read failed would)."""


#: The fetch a fan-out reads a task with (the store's `get_task`).
Fetch = Callable[[str], Awaitable[Any]]


class _Read:
    """A read of a task in flight: when it started on the hub's clock, and who joined it."""

    __slots__ = ("joiners", "started")

    def __init__(self, started: int) -> None:
        self.started = started
        self.joiners: list[asyncio.Future[Any]] = []


class _Watched:
    """One task that someone waits on: its waiters, the stamp of its last change, the read in
    flight and the latest read that ended. Kept while anyone follows or waits on the task."""

    __slots__ = (
        "changed",
        "fetch",
        "flight",
        "followers",
        "latest",
        "latest_started",
        "looks",
        "parked",
        "since",
        "waiters",
    )

    def __init__(self, since: int) -> None:
        self.waiters: dict[asyncio.Future[bool], None] = {}
        #: Parked waiters (a dict: ordered, and O(1) to let one go).
        self.parked: dict[Parked, None] = {}
        #: Parked waiters to wake with a read started from now on (:meth:`ChangeHub.look_again`).
        self.looks: dict[Parked, None] = {}
        #: What their fan-outs read the task with (every waiter of a hub gives the same).
        self.fetch: Fetch | None = None
        #: The hub's clock when the entry was made: changes from then on are stamped here.
        self.since = since
        self.followers = 0
        self.changed = 0
        self.flight: _Read | None = None
        self.latest: Any = None
        self.latest_started = -1


class _Retry:
    """What joiners of a read get when its reader was canceled: they read again."""


_RETRY = _Retry()


class ChangeHub:
    def __init__(self) -> None:
        #: Ticks on every change of a task, and when a caller begins to follow one.
        self._clock = 0
        self._watched: dict[str, _Watched] = {}
        self._work = asyncio.Event()
        self._deliveries = asyncio.Event()
        self._cancel_listeners: list[Callable[[str], None]] = []
        #: Fan-outs to parked waiters in flight (a reference, so none is collected midway).
        self._fan_outs: set[asyncio.Task[None]] = set()
        #: The clock of the last change of tasks no one watched then, and when that record
        #: was last emptied (a change before it may be forgotten).
        self._recent: dict[str, int] = {}
        self._recent_from = 0

    # -- tasks ---------------------------------------------------------------
    def task_changed(self, task_id: str) -> None:
        """Called once a change of the task is committed (here or in another process)."""
        self._clock += 1
        watched = self._watched.get(task_id)
        if watched is None:
            self._remember(task_id, self._clock)
            return
        watched.changed = self._clock
        parked = watched.parked
        if parked:
            watched.parked = {}
            self._fan_out(task_id, watched, parked)
        waiters = watched.waiters
        if waiters:
            watched.waiters = {}
            # Woken on the loop's next turn, with one callback per WAKE_BATCH: the committer
            # (a worker ending the task) carries on first, so its own bookkeeping after the
            # commit (log line, metrics, span) is done before any long-poll answers; and the
            # first waiters answer before the last are woken.
            next(iter(waiters)).get_loop().call_soon(_wake, list(waiters), 0)
            self._forget_if_idle(task_id, watched)

    def wake_all_tasks(self) -> None:
        """Every waiter re-reads its task: after changes may have been missed (a lost listener)."""
        for task_id in list(self._watched):
            self.task_changed(task_id)

    def watch(self, task_id: str) -> asyncio.Future[bool]:
        """A future done at the task's next change. Register before reading the task, so no
        change slips between read and wait; `unwatch` it when done waiting."""
        waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._entry(task_id).waiters[waiter] = None
        return waiter

    def unwatch(self, task_id: str, waiter: asyncio.Future[bool]) -> None:
        watched = self._watched.get(task_id)
        if watched is not None and waiter in watched.waiters:
            del watched.waiters[waiter]
            self._forget_if_idle(task_id, watched)

    def follow(self, task_id: str) -> TaskFollower:
        """A caller's view of one task, for long-polls: reads shared with the task's other
        followers, and waits for its next change. Close it (a `with` block) when done."""
        self._clock += 1
        watched = self._entry(task_id)
        watched.followers += 1
        return TaskFollower(self, task_id, watched, self._clock)

    # -- parked waiters ------------------------------------------------------------
    @property
    def clock(self) -> int:
        """Now on the hub's clock: taken before a read, it is what :meth:`park` needs."""
        return self._clock

    def park(self, task_id: str, parked: Parked, fetch: Fetch, read_at: int) -> None:
        """Hold `parked` until the task's next change, then wake it with the task read by
        `fetch`. `read_at` is the clock (:attr:`clock`) from before the waiter's own last read
        of the task: a change of the task heard since (stamped on its entry, or remembered
        while no one watched it) gets a read at once, so none slips between read and park."""
        watched = self._entry(task_id)
        watched.fetch = fetch
        unseen = watched.since > read_at and self._changed_unwatched(task_id, read_at)
        if unseen or watched.changed > read_at:
            self._fan_out(task_id, watched, {parked: None})
        else:
            watched.parked[parked] = None

    def _changed_unwatched(self, task_id: str, read_at: int) -> bool:
        """Whether the task may have changed after `read_at` while no one watched it."""
        return self._recent.get(task_id, 0) > read_at or self._recent_from > read_at

    def _remember(self, task_id: str, stamp: int) -> None:
        """The last change of a task no one watches (any more) was at `stamp`."""
        recent = self._recent
        if len(recent) >= RECENT_KEPT:
            recent.clear()
            self._recent_from = self._clock
        recent[task_id] = stamp

    def unpark(self, task_id: str, parked: Parked) -> None:
        """`parked` no longer waits (its deadline, its client gone); no-op when not parked."""
        watched = self._watched.get(task_id)
        if watched is not None and parked in watched.parked:
            del watched.parked[parked]
            self._forget_if_idle(task_id, watched)

    def look_again(self, task_id: str, parked: Parked, fetch: Fetch) -> None:
        """Wake `parked` (no longer parked) with a read that starts from now on, change or
        not: its deadline passed, or the server stops. Those who ask in the same turn of the
        loop share one read (10,000 long-polls made together time out together)."""
        watched = self._entry(task_id)
        watched.fetch = fetch
        watched.parked.pop(parked, None)
        if not watched.looks:
            asyncio.get_running_loop().call_soon(self._look, task_id, watched)
        watched.looks[parked] = None

    def _look(self, task_id: str, watched: _Watched) -> None:
        looks, watched.looks = watched.looks, {}
        self._fan_out(task_id, watched, looks)

    def _fan_out(self, task_id: str, watched: _Watched, parked: dict[Parked, None]) -> None:
        # Counted as a follower while it runs, so that the entry (and the changes stamped on
        # it) stays while its waiters are out of `parked`.
        watched.followers += 1
        task = asyncio.get_running_loop().create_task(self._run_fan_out(task_id, watched, parked))
        self._fan_outs.add(task)
        task.add_done_callback(self._fan_outs.discard)

    async def _run_fan_out(self, task_id: str, watched: _Watched, parked: dict[Parked, None]) -> None:
        fetch = watched.fetch
        assert fetch is not None  # (set by whoever parked them)
        try:
            while parked:
                started = self._clock
                try:
                    value = await fetch(task_id)
                except Exception as exc:
                    for waiter in parked:
                        _fails(waiter, exc)
                    return
                shared: dict[Any, Any] = {}
                still: dict[Parked, None] = {}
                for count, waiter in enumerate(parked, 1):
                    if not _wakes(waiter, value, shared):
                        still[waiter] = None
                    if not count % WAKE_BATCH:
                        await asyncio.sleep(0)  # the loop turns: the answers so far leave now
                if watched.changed > started:  # changed during the read: read again for them
                    parked = still
                    continue
                watched.parked.update(still)
                return
        finally:
            watched.followers -= 1
            self._forget_if_idle(task_id, watched)

    def _entry(self, task_id: str) -> _Watched:
        watched = self._watched.get(task_id)
        if watched is None:
            watched = self._watched[task_id] = _Watched(self._clock)
        return watched

    def _forget_if_idle(self, task_id: str, watched: _Watched) -> None:
        if (
            not watched.followers
            and not watched.waiters
            and not watched.parked
            and not watched.looks
            and self._watched.get(task_id) is watched
        ):
            del self._watched[task_id]
            if watched.changed:
                self._remember(task_id, watched.changed)

    # -- cancel ----------------------------------------------------------------
    def on_cancel(self, listener: Callable[[str], None]) -> None:
        """Workers in this process learn at once that a running task was canceled."""
        self._cancel_listeners.append(listener)

    def cancel_requested(self, task_id: str) -> None:
        for listener in self._cancel_listeners:
            listener(task_id)

    # -- callbacks -------------------------------------------------------------
    def deliveries_added(self) -> None:
        self._deliveries.set()

    async def wait_deliveries(self, wait_s: float) -> None:
        """Return when a callback may be due, or after `wait_s`."""
        try:
            async with asyncio.timeout(max(wait_s, 0)):
                await self._deliveries.wait()
        except TimeoutError:
            return
        finally:
            self._deliveries.clear()

    # -- work ----------------------------------------------------------------
    def work_added(self, _models: Iterable[str] = ()) -> None:
        self._work.set()

    async def wait_work(self, wait_s: float) -> None:
        """Return when work may be there, or after `wait_s`: the slow poll is the safety net."""
        try:
            async with asyncio.timeout(wait_s):
                await self._work.wait()
        except TimeoutError:
            return
        finally:
            self._work.clear()


class TaskFollower:
    """One caller following one task: `read` gives the task as fresh as this caller needs it
    (shared with the task's other followers), `wait` returns at its next change or a deadline.

    Every follower of a hub reads with the same function (the store's `get_task`)."""

    __slots__ = ("_hub", "_need", "_open", "_seen", "_watched", "task_id")

    def __init__(self, hub: ChangeHub, task_id: str, watched: _Watched, need: int) -> None:
        self._hub = hub
        self.task_id = task_id
        self._watched = watched
        #: A read may answer this follower if it started at or after this stamp.
        self._need = need
        #: When the read last returned started (before any: when following began).
        self._seen = need
        self._open = True

    def __enter__(self) -> TaskFollower:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._open:
            self._open = False
            self._watched.followers -= 1
            self._hub._forget_if_idle(self.task_id, self._watched)

    async def read(self, fetch: Callable[[str], Awaitable[T]]) -> T:
        """The task as a read that started once the hub had heard every change this follower
        must see: the latest read of any follower if it did, else the read in flight if it
        did, else a new read that later followers may join."""
        watched = self._watched
        while True:
            if watched.latest_started >= self._need:
                self._seen = watched.latest_started
                return cast(T, watched.latest)
            flight = watched.flight
            if flight is None or flight.started < self._need:
                return await self._lead(fetch)
            joiner: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            flight.joiners.append(joiner)
            value = await joiner
            if value is not _RETRY:
                self._seen = flight.started
                return cast(T, value)

    async def _lead(self, fetch: Callable[[str], Awaitable[T]]) -> T:
        watched = self._watched
        flight = watched.flight = _Read(self._hub._clock)
        try:
            value = await fetch(self.task_id)
        except BaseException as exc:
            if watched.flight is flight:
                watched.flight = None
            # A failed read fails its joiners too; a canceled reader leaves them to read again.
            for joiner in flight.joiners:
                if not joiner.done():
                    if isinstance(exc, Exception):
                        joiner.set_exception(exc)
                    else:
                        joiner.set_result(_RETRY)
            raise
        if watched.flight is flight:
            watched.flight = None
        if flight.started >= watched.latest_started:
            watched.latest, watched.latest_started = value, flight.started
        for joiner in flight.joiners:
            if not joiner.done():
                joiner.set_result(value)
        self._seen = flight.started
        return value

    async def wait(self, deadline: float) -> bool:
        """Until the task changes after the read last returned started (True), or until
        `deadline` on the loop's clock (False). Either way the next `read` is a newer one;
        after the deadline a new read of this follower's own, as a long-poll's last look."""
        watched = self._watched
        if watched.changed > self._seen:
            self._need = watched.changed
            return True
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        watched.waiters[waiter] = None
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            changed = await waiter
        finally:
            timer.cancel()
            watched.waiters.pop(waiter, None)
        if changed:
            self._need = watched.changed
        else:
            self._hub._clock += 1
            self._need = self._hub._clock
        return changed


def _wakes(waiter: Parked, value: Any, shared: dict[Any, Any]) -> bool:
    """`waiter.wake`; a waiter that fails is done (it answers its own errors; this is the net)."""
    try:
        return waiter.wake(value, shared)
    except Exception:
        log.exception("a parked waiter failed on its wake-up")
        return True


def _fails(waiter: Parked, error: Exception) -> None:
    try:
        waiter.read_failed(error)
    except Exception:
        log.exception("a parked waiter failed on a failed read")


def _wake(waiters: list[asyncio.Future[bool]], start: int) -> None:
    end = start + WAKE_BATCH
    for waiter in waiters[start:end]:
        if not waiter.done():
            waiter.set_result(_CHANGED)
    if end < len(waiters):  # after the ones just woken have run
        waiters[0].get_loop().call_soon(_wake, waiters, end)


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(_EXPIRED)
