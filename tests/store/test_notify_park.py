"""Parked waiters of the change hub (:meth:`ChangeHub.park`): objects, not coroutines, woken
after a change with the task read once for all of them.

The store is a model of a database, as in test_notify_follow.py: a committed value that a
change is announced for after its commit, and reads that take their snapshot when they start
(the stalest a real read can be) and, when gated, end when the test says.

Some checks look at `hub._watched` (private): whether the hub still holds a task's entry is
the memory a parked poll would leak, and nothing public tells it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gengate.store import notify
from gengate.store.notify import WAKE_BATCH, ChangeHub

TASK = "task_1"
OTHER = "task_2"


class Database:
    """One task's value; `change` commits and announces it. With `gated`, a read waits for
    `finish_reads` (or its own gate); `failing` reads raise."""

    def __init__(self, hub: ChangeHub, *, gated: bool = False) -> None:
        self.hub = hub
        self.value = 0
        self.announced = 0
        self.reads: list[str] = []
        self.gated = gated
        self.gates: list[asyncio.Event] = []
        self.failing = 0

    async def read(self, task_id: str) -> int:
        self.reads.append(task_id)
        snapshot = self.value
        failing = self.failing > 0
        self.failing -= failing
        if self.gated:
            gate = asyncio.Event()
            self.gates.append(gate)
            await gate.wait()
        if failing:
            raise OSError("the database went away")
        return snapshot

    def commit(self) -> None:
        self.value += 1

    def announce(self) -> None:
        self.announced = self.value
        self.hub.task_changed(TASK)

    def change(self) -> None:
        self.commit()
        self.announce()

    def finish_reads(self) -> None:
        for gate in self.gates:
            gate.set()


class Waiter:
    """A parked waiter: records every wake-up; done once `done_at` says so (by default at the
    first), or never with `raises`."""

    def __init__(self, done_at: Callable[[Any], bool] = lambda _value: True, *, raises: bool = False) -> None:
        self.done_at = done_at
        self.raises = raises
        self.woken: list[tuple[Any, dict[Any, Any]]] = []
        self.failed: list[Exception] = []

    def wake(self, task: Any, shared: dict[Any, Any]) -> bool:
        self.woken.append((task, shared))
        if self.raises:
            raise RuntimeError("a waiter that fails on its wake-up")
        return self.done_at(task)

    def read_failed(self, error: Exception) -> None:
        self.failed.append(error)
        if self.raises:
            raise RuntimeError("a waiter that fails on its failed read")

    @property
    def values(self) -> list[Any]:
        return [value for value, _shared in self.woken]


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def park(hub: ChangeHub, db: Database, waiter: Waiter, task_id: str = TASK) -> None:
    """Parked with nothing changed since its read (`read_at` is now)."""
    hub.park(task_id, waiter, db.read, hub.clock)


async def test_one_change_wakes_every_parked_waiter_with_one_read() -> None:
    hub = ChangeHub()
    db = Database(hub)
    waiters = [Waiter() for _ in range(2 * WAKE_BATCH + 3)]  # more than one batch of wake-ups
    for waiter in waiters:
        park(hub, db, waiter)
    await settle()
    assert db.reads == []  # parked, nothing read
    db.change()
    await settle()
    assert db.reads == [TASK]
    assert all(waiter.values == [1] for waiter in waiters)
    shared = waiters[0].woken[0][1]
    assert all(waiter.woken[0][1] is shared for waiter in waiters)  # one dict per read
    assert not hub._watched
    db.change()
    await settle()
    assert db.reads == [TASK]
    assert all(len(waiter.woken) == 1 for waiter in waiters)


async def test_what_one_waiter_puts_in_shared_the_next_one_finds() -> None:
    hub = ChangeHub()
    db = Database(hub)

    class Builder(Waiter):
        def wake(self, task: Any, shared: dict[Any, Any]) -> bool:
            shared.setdefault("body", []).append(id(self))
            return super().wake(task, shared)

    builders = [Builder() for _ in range(3)]
    for builder in builders:
        park(hub, db, builder)
    db.change()
    await settle()
    assert builders[0].woken[0][1]["body"] == [id(builder) for builder in builders]


async def test_a_waiter_the_change_does_not_concern_stays_parked_for_the_next() -> None:
    hub = ChangeHub()
    db = Database(hub)
    patient, eager = Waiter(lambda value: value >= 2), Waiter()
    park(hub, db, patient)
    park(hub, db, eager)
    db.change()
    await settle()
    assert (patient.values, eager.values) == ([1], [1])
    assert set(hub._watched[TASK].parked) == {patient}
    db.change()
    await settle()
    assert (patient.values, eager.values) == ([1, 2], [1])
    assert db.reads == [TASK, TASK]
    assert not hub._watched


async def test_a_change_during_the_read_reads_again_for_those_not_done() -> None:
    hub = ChangeHub()
    db = Database(hub, gated=True)
    patient, eager = Waiter(lambda value: value >= 2), Waiter()
    park(hub, db, patient)
    park(hub, db, eager)
    db.change()
    await settle()
    assert db.reads == [TASK]  # the fan-out's read, in flight (its snapshot: 1)
    db.change()  # heard while the read is in flight: it may not be the last word for them
    db.finish_reads()
    await settle()
    db.finish_reads()
    await settle()
    assert eager.values == [1]  # done with the first read, which started after the change it waited on
    assert patient.values == [1, 2]  # read again, for the change heard during the first read
    assert db.reads == [TASK, TASK]
    assert not hub._watched


async def test_with_no_change_during_the_read_there_is_no_second_read() -> None:
    hub = ChangeHub()
    db = Database(hub, gated=True)
    patient = Waiter(lambda value: value >= 2)
    park(hub, db, patient)
    db.change()
    await settle()
    db.finish_reads()
    await settle()
    assert patient.values == [1]
    assert db.reads == [TASK]
    assert set(hub._watched[TASK].parked) == {patient}


async def test_a_change_between_the_waiters_read_and_its_park_wakes_it_at_once() -> None:
    hub = ChangeHub()
    db = Database(hub)
    hub.watch(TASK)  # someone waits on the task: its changes are stamped on the hub's entry
    read_at = hub.clock  # before the waiter's own read (of value 0)
    db.change()  # stamped after that read began
    waiter = Waiter()
    hub.park(TASK, waiter, db.read, read_at)
    await settle()
    assert waiter.values == [1]
    assert db.reads == [TASK]


async def test_a_change_of_a_task_nobody_watched_since_the_read_wakes_the_waiter_at_once() -> None:
    hub = ChangeHub()
    db = Database(hub)
    read_at = hub.clock
    db.change()  # no entry for the task, nothing stamped: only the clock knows
    waiter = Waiter()
    hub.park(TASK, waiter, db.read, read_at)
    await settle()
    assert waiter.values == [1]


async def test_the_clock_ticking_for_another_task_costs_no_read() -> None:
    hub = ChangeHub()
    db = Database(hub)
    read_at = hub.clock
    hub.task_changed(OTHER)  # remembered as the other task's: this one did not change
    waiter = Waiter(lambda value: value >= 1)
    hub.park(TASK, waiter, db.read, read_at)
    await settle()
    assert db.reads == []
    assert set(hub._watched[TASK].parked) == {waiter}
    db.change()
    await settle()
    assert waiter.values == [1]


async def test_a_change_stamped_on_an_entry_since_forgotten_wakes_the_waiter_at_once() -> None:
    hub = ChangeHub()
    db = Database(hub)
    read_at = hub.clock
    other = Waiter(lambda value: value >= 1)
    park(hub, db, other)  # the task is watched...
    db.change()  # ...when it changes, and then no more
    await settle()
    assert other.values == [1]
    assert TASK not in hub._watched
    waiter = Waiter()
    hub.park(TASK, waiter, db.read, read_at)  # read before that change: it must see it
    await settle()
    assert waiter.values == [1]


async def test_past_the_changes_it_remembers_the_hub_reads_to_be_sure(monkeypatch: Any) -> None:
    monkeypatch.setattr(notify, "RECENT_KEPT", 2)
    hub = ChangeHub()
    db = Database(hub)
    read_at = hub.clock
    db.change()  # this task's change, then enough others to forget it
    for other in ("task_a", "task_b", "task_c"):
        hub.task_changed(other)
    waiter = Waiter()
    hub.park(TASK, waiter, db.read, read_at)
    await settle()
    assert waiter.values == [1]
    fresh = Waiter()
    hub.park(TASK, fresh, db.read, hub.clock)  # nothing since: parked, no read
    await settle()
    assert fresh.values == []


async def test_no_read_when_nothing_changed_since_the_waiters_read() -> None:
    hub = ChangeHub()
    db = Database(hub)
    fresh = Waiter()
    park(hub, db, fresh)  # an unwatched task, read_at == clock
    hub.watch(TASK)
    db.change()  # stamped on the entry
    await settle()
    fresh.woken.clear()
    reads = len(db.reads)
    later = Waiter()
    park(hub, db, later)  # read after that change: nothing to catch up on
    await settle()
    assert later.woken == []
    assert len(db.reads) == reads
    db.change()
    await settle()
    assert later.values == [2]


async def test_unparked_waiters_are_not_woken_and_the_hub_forgets_the_task() -> None:
    hub = ChangeHub()
    db = Database(hub)
    gone, staying = Waiter(), Waiter()
    park(hub, db, gone)
    park(hub, db, staying)
    hub.unpark(TASK, gone)
    hub.unpark(TASK, gone)  # twice: a no-op
    hub.unpark(OTHER, gone)  # a task it never waited on: a no-op
    db.change()
    await settle()
    assert (gone.woken, staying.values) == ([], [1])
    last = Waiter()
    park(hub, db, last)
    assert TASK in hub._watched
    hub.unpark(TASK, last)
    assert not hub._watched
    db.change()
    await settle()
    assert last.woken == []
    assert db.reads == [TASK]


async def test_a_failed_read_is_told_to_every_waiter_of_it_once_and_they_are_done() -> None:
    hub = ChangeHub()
    db = Database(hub)
    first, failing, last = Waiter(), Waiter(raises=True), Waiter()
    for waiter in (first, failing, last):
        park(hub, db, waiter)
    db.failing = 1
    db.change()
    await settle()
    assert db.reads == [TASK]  # one read for them all, failed for them all
    for waiter in (first, failing, last):  # one that raises does not keep the others from knowing
        assert [type(error) for error in waiter.failed] == [OSError]
        assert waiter.woken == []
    assert not hub._watched  # done: they answer with the error, as their own read would have
    db.change()
    await settle()
    assert all(waiter.woken == [] and len(waiter.failed) == 1 for waiter in (first, failing, last))


async def test_a_waiter_that_raises_does_not_stop_the_others() -> None:
    hub = ChangeHub()
    db = Database(hub)
    before, failing, after = Waiter(), Waiter(raises=True), Waiter()
    for waiter in (before, failing, after):
        park(hub, db, waiter)
    db.change()
    await settle()
    assert (before.values, failing.values, after.values) == ([1], [1], [1])
    assert not hub._watched  # the failing one counts as done: it answers its own errors
    db.change()
    await settle()
    assert len(failing.woken) == 1


async def test_other_tasks_parked_waiters_are_not_woken() -> None:
    hub = ChangeHub()
    db = Database(hub)
    mine, theirs = Waiter(), Waiter()
    park(hub, db, mine)
    park(hub, db, theirs, OTHER)
    db.change()
    await settle()
    assert (mine.values, theirs.woken) == ([1], [])
    assert db.reads == [TASK]
    assert set(hub._watched) == {OTHER}
    hub.unpark(OTHER, theirs)
    assert not hub._watched


async def test_waiters_looking_again_in_one_turn_share_a_read_that_starts_then() -> None:
    """`look_again` (a poll's deadline): a read that starts from now on, change or not, shared
    by those that ask in the same turn; never a read already in flight."""
    hub = ChangeHub()
    db = Database(hub, gated=True)
    woken_by_change = Waiter()
    park(hub, db, woken_by_change)
    db.change()
    await settle()
    assert db.reads == [TASK]  # in flight, its snapshot: 1
    db.commit()  # committed, not announced: only a read that starts now sees it
    due = [Waiter() for _ in range(3)]
    for waiter in due:
        park(hub, db, waiter)
    for waiter in due:
        hub.look_again(TASK, waiter, db.read)
    await settle()
    assert db.reads == [TASK, TASK]
    db.finish_reads()
    await settle()
    assert woken_by_change.values == [1]
    assert all(waiter.values == [2] for waiter in due)
    assert not hub._watched


async def test_looking_again_at_a_task_nobody_waits_on_reads_it_and_forgets_it() -> None:
    hub = ChangeHub()
    db = Database(hub)
    waiter = Waiter()
    hub.look_again(TASK, waiter, db.read)
    await settle()
    assert waiter.values == [0]
    assert db.reads == [TASK]
    assert not hub._watched


# -- the property: no change a parked waiter must see slips by ---------------------------------
STEPS = st.lists(
    st.one_of(
        st.tuples(
            st.sampled_from(["look", "commit", "announce", "commit+announce", "other", "settle"]), st.just(0)
        ),
        st.tuples(st.sampled_from(["park", "finish", "unpark"]), st.integers(0, 7)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
# A change between a waiter's read and its park (the task watched by nobody yet).
@example(steps=[("look", 0), ("commit+announce", 0), ("park", 0)])
# A change announced while the fan-out reads for a waiter the read it started with does not satisfy.
@example(
    steps=[("commit", 0), ("look", 0), ("park", 0), ("announce", 0), ("commit+announce", 0), ("finish", 0)]
)
def test_no_parked_waiter_stays_parked_past_a_change_it_must_see(steps: list[tuple[str, int]]) -> None:
    """A waiter reads the task (after taking `read_at`) and parks later; it is done once it is
    woken with a value newer than the one it read (a long-poll's "state changed"). Changes are
    committed, announced, and read in any order; once every read has ended, a waiter still
    parked has seen every change announced (none slipped between its read and its park, nor
    during a fan-out's read), and was never handed a value older than its own read."""
    asyncio.run(play(steps))


class Looker(Waiter):
    def __init__(self, hub: ChangeHub, db: Database) -> None:
        self.read_at = hub.clock
        self.seen = db.value  # its own read, which started after `read_at`
        super().__init__(lambda value: bool(value > self.seen))
        self.parked = self.unparked = False
        self.problems: list[str] = []

    def wake(self, task: Any, shared: dict[Any, Any]) -> bool:
        # (recorded, not asserted: the hub logs and swallows what a wake-up raises)
        if self.unparked:  # unparked while a fan-out read for it: done, as a parked poll that left
            return True
        if not self.parked or self.done:
            self.problems.append(f"woken with {task} while not parked, or after it was done")
        if task < self.seen:
            self.problems.append(f"handed {task}, older than its own read ({self.seen})")
        if self.woken and task < self.woken[-1][0]:
            self.problems.append(f"handed {task} after {self.woken[-1][0]}")
        return super().wake(task, shared)

    @property
    def done(self) -> bool:
        return bool(self.woken) and self.woken[-1][0] > self.seen


class Player:
    def __init__(self) -> None:
        self.hub = ChangeHub()
        self.db = Database(self.hub, gated=True)
        self.lookers: list[Looker] = []

    def look(self, _n: int) -> None:
        self.lookers.append(Looker(self.hub, self.db))

    def park(self, n: int) -> None:
        waiting = [looker for looker in self.lookers if not looker.parked]
        if waiting:
            looker = waiting[n % len(waiting)]
            looker.parked = True
            self.hub.park(TASK, looker, self.db.read, looker.read_at)

    def unpark(self, n: int) -> None:
        parked = [looker for looker in self.lookers if looker.parked and not looker.unparked]
        if parked:
            looker = parked[n % len(parked)]
            if not looker.done:  # (a parked poll done with its answer unparks itself: a no-op)
                looker.unparked = True
            self.hub.unpark(TASK, looker)

    def commit(self, _n: int) -> None:
        self.db.commit()

    def announce(self, _n: int) -> None:
        self.db.announce()

    def commit_announce(self, _n: int) -> None:
        self.db.change()

    def other(self, _n: int) -> None:
        self.hub.task_changed(OTHER)

    def settle(self, _n: int) -> None:
        pass

    def finish(self, n: int) -> None:
        if self.db.gates:
            self.db.gates[n % len(self.db.gates)].set()

    async def quiesce(self) -> None:
        async with asyncio.timeout(5):
            while self.hub._fan_outs or not all(gate.is_set() for gate in self.db.gates):
                self.db.finish_reads()
                await settle()


async def play(steps: list[tuple[str, int]]) -> None:
    player = Player()
    for step, n in steps:
        getattr(player, step.replace("+", "_"))(n)
        await settle()
    await player.quiesce()
    for looker in player.lookers:
        assert not looker.problems, looker.problems
        if looker.parked and not looker.unparked and not looker.done:
            assert player.db.announced <= looker.seen, (
                f"still parked after change {player.db.announced} was announced; it saw {looker.seen}"
            )
    player.db.change()  # one more: every waiter still parked is done
    await player.quiesce()
    assert all(looker.done for looker in player.lookers if looker.parked and not looker.unparked)
    assert not [looker.problems for looker in player.lookers if looker.problems]
    assert not player.hub._watched, "a task stays watched after its last waiter left"
