"""The server pool: fair queueing, spreading, capacity, health marks and the per-server breaker."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import msgspec
import pytest

from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.breaker import Breakers
from gengate.providers.fallback import FallbackProvider, Link
from gengate.providers.server_pool import ServerPool, pool_states

A, B = "http://a", "http://b"


def states(pool: ServerPool) -> dict[str, tuple[str, int, int]]:
    return {s.url: (s.state, s.busy, s.capacity) for s in pool.snapshot()}


async def hold(pool: ServerPool, release: asyncio.Event, seen: list[str]) -> None:
    async with pool.slot() as slot:
        seen.append(slot.url)
        await release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_runs_spread_over_the_pool_and_the_rest_wait_in_turn() -> None:
    pool = ServerPool("p", [A, B])
    release = asyncio.Event()
    seen: list[str] = []
    first = [asyncio.create_task(hold(pool, release, seen)) for _ in range(2)]
    await settle()
    assert sorted(seen) == [A, B]
    assert states(pool) == {A: ("busy", 1, 1), B: ("busy", 1, 1)}

    order: list[int] = []

    async def queued(n: int) -> None:
        async with pool.slot():
            order.append(n)

    later = [asyncio.create_task(queued(n)) for n in range(4)]
    await settle()
    assert order == []
    assert pool.waiting() == 4
    release.set()
    await asyncio.gather(*first, *later)
    assert order == [0, 1, 2, 3]
    assert states(pool) == {A: ("ready", 0, 1), B: ("ready", 0, 1)}


async def test_capacity_lets_a_server_take_several_runs_least_busy_first() -> None:
    pool = ServerPool("p", [A, B], capacity=2)
    pool.set_capacity(B, 4)
    release = asyncio.Event()
    seen: list[str] = []
    tasks = [asyncio.create_task(hold(pool, release, seen)) for _ in range(6)]
    await settle()
    assert seen.count(A) == 2
    assert seen.count(B) == 4
    assert pool.waiting() == 0
    release.set()
    await asyncio.gather(*tasks)


async def test_cancel_while_waiting_gives_up_the_turn() -> None:
    pool = ServerPool("p", [A])
    release, cancel = asyncio.Event(), asyncio.Event()
    holder = asyncio.create_task(hold(pool, release, []))
    await settle()

    async def canceled() -> None:
        async with pool.slot(cancel):
            pytest.fail("a canceled run got a slot")

    waiting = asyncio.create_task(canceled())
    after: list[str] = []
    next_one = asyncio.create_task(hold(pool, asyncio.Event(), after))
    await settle()
    cancel.set()
    with pytest.raises(ProviderFailure) as failure:
        await waiting
    assert failure.value.fail_code == FailCode.CANCELED
    release.set()
    await holder
    await settle()
    assert after == [A]
    next_one.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await next_one
    assert states(pool)[A] == ("ready", 0, 1)


async def test_a_task_canceled_from_outside_while_waiting_leaks_no_slot() -> None:
    pool = ServerPool("p", [A])
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release, []))
    await settle()
    waiting = asyncio.create_task(hold(pool, asyncio.Event(), []))
    await settle()
    waiting.cancel()
    release.set()
    await holder
    with contextlib.suppress(asyncio.CancelledError):
        await waiting
    assert states(pool)[A] == ("ready", 0, 1)
    async with pool.slot() as slot:
        assert slot.url == A


async def test_down_and_starting_servers_take_nothing() -> None:
    pool = ServerPool("p", [A, B])
    pool.mark_down(A, "SETUP_FAILED")
    pool.mark_starting(B)
    assert states(pool) == {A: ("down", 0, 1), B: ("starting", 0, 1)}
    assert pool.snapshot()[0].reason == "SETUP_FAILED"
    got: list[str] = []
    waiting = asyncio.create_task(hold(pool, asyncio.Event(), got))
    await settle()
    assert got == []  # B is starting: the run waits for it
    pool.mark_up(B)
    await settle()
    assert got == [B]
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


async def test_when_every_server_is_down_a_run_fails_at_once_transiently() -> None:
    pool = ServerPool("p", [A, B])
    pool.mark_down(A, "unreachable")
    pool.mark_starting(B)
    got: list[str] = []
    waiting = asyncio.create_task(hold(pool, asyncio.Event(), got))
    await settle()
    assert not waiting.done()  # B may come up
    pool.mark_down(B, "DEFUNCT")
    with pytest.raises(ProviderFailure) as failure:
        await waiting
    assert failure.value.transient
    assert failure.value.fail_code == FailCode.PROVIDER_ERROR
    assert "DEFUNCT" in failure.value.message
    assert "unreachable" in failure.value.message
    with pytest.raises(ProviderFailure):
        async with pool.slot():
            pass


async def test_the_breaker_skips_a_failing_server_then_tries_it_once() -> None:
    pool = ServerPool("p", [A, B], breaker_failures=2, breaker_reset_s=0.2)
    for _ in range(2):
        async with pool.slot() as slot:
            assert slot.url == A  # both free: the first one
            slot.fail("connection refused")
    assert states(pool)[A][0] == "down"
    assert "2 failed runs" in (pool.snapshot()[0].reason or "")
    for _ in range(3):
        async with pool.slot() as slot:
            assert slot.url == B
    await asyncio.sleep(0.25)  # past the reset: one trial run may go to A
    release = asyncio.Event()
    seen: list[str] = []
    tasks = [asyncio.create_task(hold(pool, release, seen)) for _ in range(2)]
    await settle()
    assert sorted(seen) == [A, B]
    release.set()
    await asyncio.gather(*tasks)  # the trial succeeded: the breaker is closed again
    assert states(pool)[A] == ("ready", 0, 1)


async def test_a_waiting_run_gets_a_server_whose_breaker_resets() -> None:
    pool = ServerPool("p", [A], breaker_failures=1, breaker_reset_s=0.1)
    async with pool.slot() as slot:
        slot.fail("boom")
    # The only server's breaker is open: that is down, and a new run fails at once.
    with pytest.raises(ProviderFailure):
        async with pool.slot():
            pass
    await asyncio.sleep(0.15)
    async with pool.slot() as slot:
        assert slot.url == A


async def test_a_server_that_says_it_is_full_takes_nothing_until_one_of_our_runs_ends() -> None:
    pool = ServerPool("p", [A, B], capacity=2)
    pool.mark_down(B, "unreachable")
    release = asyncio.Event()
    holder = asyncio.create_task(hold(pool, release, []))
    await settle()
    async with pool.slot() as slot:
        slot.full()  # busy with someone else's work although we thought it had room
    assert states(pool)[A] == ("busy", 1, 2)
    got: list[str] = []
    waiting = asyncio.create_task(hold(pool, asyncio.Event(), got))
    await settle()
    assert got == []
    release.set()  # one of ours ends there: it has room again
    await holder
    await settle()
    assert got == [A]
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


async def test_mark_up_clears_full() -> None:
    pool = ServerPool("p", [A])
    async with pool.slot() as slot:
        slot.full()
    got: list[str] = []
    waiting = asyncio.create_task(hold(pool, asyncio.Event(), got))
    await settle()
    assert got == []
    pool.mark_up(A)
    await settle()
    assert got == [A]
    waiting.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiting


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ServerPool("p", [])
    with pytest.raises(ValueError, match="twice"):
        ServerPool("p", [A, A])
    with pytest.raises(ValueError, match="capacity"):
        ServerPool("p", [A], capacity=0)


def test_pool_states_finds_the_pools_of_the_chains_and_masks_passwords() -> None:
    class Pooled:
        def __init__(self, pool: ServerPool) -> None:
            self.pool = pool
            self.inputs: Mapping[str, type[msgspec.Struct]] = {"predict": msgspec.Struct}

        async def run(self, input: dict[str, Any], ctx: RunContext) -> list[OutputFile]:
            raise NotImplementedError

    pool = ServerPool("mine", ["http://user:secret@gpu-1:5000", B])
    pool.mark_down(B, "DEFUNCT")
    chain = FallbackProvider([Link("mine", "mine", Pooled(pool))], Breakers())
    found = pool_states({"mine": chain, "other": Pooled(ServerPool("loose", [A]))})
    assert list(found) == ["mine"]  # only what a model's chain uses
    assert [(s.url, s.state, s.reason) for s in found["mine"]] == [
        ("http://user:***@gpu-1:5000", "ready", None),
        (B, "down", "DEFUNCT"),
    ]
