"""The hub's shared reads, on a model of a database: a committed value that changes are
announced for after the commit (as the stores and LISTEN do), and reads that take their
snapshot when they start (the stalest a real read can be) and end when the test says.

The rule under test: a follower's read is never older than what it must see, which is the
value committed when it began following, and after a wake-up the value announced by then.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gengate.store.notify import WAKE_BATCH, ChangeHub, TaskFollower

TASK = "task_1"
FAR = 1e9


class Database:
    """One task's value; `commit` changes it, `announce` tells the hub (after the commit)."""

    def __init__(self, hub: ChangeHub) -> None:
        self.hub = hub
        self.value = 0
        self.announced = 0
        self.reads = 0
        self.gates: list[asyncio.Event] = []
        self.fail_next = False

    async def read(self, task_id: str) -> int:
        assert task_id == TASK
        self.reads += 1
        snapshot = self.value
        failing, self.fail_next = self.fail_next, False
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

    def finish_reads(self) -> None:
        for gate in self.gates:
            gate.set()


async def settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def first_look(db: Database, follower: TaskFollower) -> int:
    floor = db.value  # what the caller may have read just before it began to follow
    value = await follower.read(db.read)
    assert value >= floor, "a read older than the caller's own look"
    return value


async def next_look(db: Database, follower: TaskFollower) -> int:
    await follower.wait(FAR)
    floor = db.announced
    value = await follower.read(db.read)
    assert value >= floor, "a read that started before the change that woke it"
    return value


STEPS = st.lists(
    st.one_of(
        st.tuples(st.sampled_from(["follow", "commit", "announce", "commit+announce", "fail"]), st.just(0)),
        st.tuples(st.sampled_from(["finish", "look", "cancel"]), st.integers(0, 7)),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@given(steps=STEPS)
def test_no_follower_ever_gets_a_read_older_than_what_it_must_see(steps: list[tuple[str, int]]) -> None:
    asyncio.run(play(steps))


async def play(steps: list[tuple[str, int]]) -> None:
    player = Player()
    for step, n in steps:
        getattr(player, step.replace("+", "_"))(n)
        await settle()
        player.collect()
    await player.finish_all()


class Player:
    """Plays the steps on one hub and database; followers' looks run as tasks."""

    def __init__(self) -> None:
        self.hub = ChangeHub()
        self.db = Database(self.hub)
        self.followers: list[TaskFollower] = []
        self.running: dict[int, asyncio.Task[int]] = {}
        self.spent: list[asyncio.Task[int]] = []

    def follow(self, _n: int) -> None:
        follower = self.hub.follow(TASK)
        self.followers.append(follower)
        self.running[len(self.followers) - 1] = asyncio.create_task(first_look(self.db, follower))

    def commit(self, _n: int) -> None:
        self.db.commit()

    def announce(self, _n: int) -> None:
        self.db.announce()

    def commit_announce(self, _n: int) -> None:
        self.db.commit()
        self.db.announce()

    def fail(self, _n: int) -> None:
        self.db.fail_next = True

    def finish(self, n: int) -> None:
        if self.db.gates:
            self.db.gates[n % len(self.db.gates)].set()

    def look(self, n: int) -> None:
        if self.followers and (i := n % len(self.followers)) not in self.running:
            self.running[i] = asyncio.create_task(next_look(self.db, self.followers[i]))

    def cancel(self, n: int) -> None:
        if self.running:
            self.running[sorted(self.running)[n % len(self.running)]].cancel()

    def collect(self) -> None:
        for i, task in list(self.running.items()):
            if task.done():
                self.spent.append(self.running.pop(i))

    async def finish_all(self) -> None:
        """One more change, every read let through: every follower answers."""
        self.commit_announce(0)
        async with asyncio.timeout(5):
            while self.running:
                self.db.finish_reads()
                await settle()
                self.collect()
        for task in self.spent:
            if not task.cancelled() and not isinstance(task.exception(), OSError):
                task.result()  # the assertions inside
        for follower in self.followers:
            follower.close()
        assert not self.hub._watched, "a task stays watched after its last follower left"


async def test_followers_woken_by_one_change_share_one_read() -> None:
    hub = ChangeHub()
    db = Database(hub)
    followers = [hub.follow(TASK) for _ in range(20)]
    first = [asyncio.create_task(follower.read(db.read)) for follower in followers]
    await settle()
    db.finish_reads()
    assert await asyncio.gather(*first) == [0] * 20
    assert db.reads == 1  # all began following before it started: one read for all
    looks = [asyncio.create_task(next_look(db, follower)) for follower in followers]
    await settle()
    db.commit()
    db.announce()
    await settle()
    db.finish_reads()
    assert await asyncio.gather(*looks) == [1] * 20
    assert db.reads == 2


async def test_a_failed_read_fails_those_who_joined_it() -> None:
    hub = ChangeHub()
    db = Database(hub)
    leader, joiner = hub.follow(TASK), hub.follow(TASK)
    await settle()
    db.fail_next = True
    # Both began following before the read started: both may take it.
    reads = [asyncio.create_task(follower.read(db.read)) for follower in (joiner, leader)]
    await settle()
    assert db.reads == 1
    db.finish_reads()
    results: list[Any] = await asyncio.gather(*reads, return_exceptions=True)
    assert [type(result) for result in results] == [OSError, OSError]


async def test_when_the_reader_is_canceled_those_who_joined_read_again() -> None:
    hub = ChangeHub()
    db = Database(hub)
    leader, joiner = hub.follow(TASK), hub.follow(TASK)
    reads = [asyncio.create_task(follower.read(db.read)) for follower in (leader, joiner)]
    await settle()
    assert db.reads == 1
    reads[0].cancel()
    await settle()
    assert db.reads == 2
    db.finish_reads()
    assert await reads[1] == 0
    with pytest.raises(asyncio.CancelledError):
        await reads[0]


async def test_a_follower_misses_no_change_between_its_read_and_its_wait() -> None:
    hub = ChangeHub()
    db = Database(hub)
    follower = hub.follow(TASK)
    read = asyncio.create_task(follower.read(db.read))
    await settle()
    db.commit()
    db.announce()  # while the read is in flight, before any wait
    db.finish_reads()
    assert await read == 0
    assert await asyncio.wait_for(follower.wait(FAR), 1) is True
    look = asyncio.create_task(follower.read(db.read))
    await settle()
    db.finish_reads()
    assert await look == 1


async def test_a_wait_ends_at_its_deadline_and_the_next_read_is_new() -> None:
    hub = ChangeHub()
    db = Database(hub)
    follower = hub.follow(TASK)
    read = asyncio.create_task(follower.read(db.read))
    await settle()
    db.finish_reads()
    await read
    db.commit()  # committed, not yet heard of
    loop = asyncio.get_running_loop()
    assert await follower.wait(loop.time() + 0.01) is False
    look = asyncio.create_task(follower.read(db.read))
    await settle()
    db.finish_reads()
    assert await look == 1
    assert db.reads == 2
    follower.close()
    assert not hub._watched


async def test_the_first_waiters_run_before_the_last_are_woken() -> None:
    """10,000 waiters of one change are woken a batch per turn of the loop: the first answers
    go out while the rest wait their turn, not after all are woken."""
    hub = ChangeHub()
    waiters = [hub.watch(TASK) for _ in range(3 * WAKE_BATCH)]
    woken_when_first_ran: list[int] = []

    async def first() -> None:
        await waiters[0]
        woken_when_first_ran.append(sum(waiter.done() for waiter in waiters))

    runner = asyncio.create_task(first())
    await settle()
    hub.task_changed(TASK)
    assert not any(waiter.done() for waiter in waiters)  # not before the committer carries on
    await runner
    assert woken_when_first_ran == [WAKE_BATCH]
    await settle()
    assert all(waiter.done() for waiter in waiters)
    assert not hub._watched
