"""`SharedTimeout` keeps `asyncio.timeout`'s contract: each scenario runs under both, and the
outcomes (what leaves the block, what `expired()` says, whether the task is cancelled later)
must be the same; only the deadline may be up to one resolution late."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from gengate.deadlines import RESOLUTION_S, SharedTimeout


class AsyncioTimeout:
    """`asyncio.timeout` behind the same plain `with` as SharedTimeout, for the comparison."""

    def __init__(self, delay_s: float) -> None:
        self._timeout = asyncio.timeout(delay_s)

    async def __aenter__(self) -> AsyncioTimeout:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self._timeout.__aexit__(*exc)

    def expired(self) -> bool:
        return self._timeout.expired()


@contextlib.asynccontextmanager
async def shared(delay_s: float) -> Any:
    with SharedTimeout(delay_s) as timeout:
        yield timeout


def asyncio_timeout(delay_s: float) -> AsyncioTimeout:
    return AsyncioTimeout(delay_s)


Kind = Callable[[float], Any]
KINDS = [pytest.param(shared, id="shared"), pytest.param(asyncio_timeout, id="asyncio")]


async def outcome(
    kind: Kind, delay_s: float, body: Callable[[], Awaitable[object]], cancel_after: float | None
) -> tuple[str, bool, str]:
    """What left the block, whether the timeout says expired, and what the task met after it."""
    timeout: Any = None

    async def run() -> tuple[str, str]:
        nonlocal timeout
        try:
            async with kind(delay_s) as timeout:
                await body()
            left = "nothing"
        except TimeoutError:
            left = "TimeoutError"
        except asyncio.CancelledError:
            left = "CancelledError"
            raise
        try:
            await asyncio.sleep(RESOLUTION_S * 3)  # a cancel left behind would land here
            after = "nothing"
        except asyncio.CancelledError:
            after = "CancelledError"
        return left, after

    task = asyncio.create_task(run())
    if cancel_after is not None:
        await asyncio.sleep(cancel_after)
        task.cancel()
    try:
        left, after = await task
    except asyncio.CancelledError:
        left, after = "CancelledError", "-"
    return left, timeout.expired(), after


@pytest.mark.parametrize("kind", KINDS)
async def test_past_the_delay_the_block_ends_with_timeout_error(kind: Kind) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await outcome(kind, 0.05, lambda: asyncio.sleep(5), None) == ("TimeoutError", True, "nothing")
    assert 0.05 <= loop.time() - started < 1.0


@pytest.mark.parametrize("kind", KINDS)
async def test_a_block_done_in_time_is_left_alone(kind: Kind) -> None:
    assert await outcome(kind, 0.05, lambda: asyncio.sleep(0.001), None) == ("nothing", False, "nothing")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cancel_from_elsewhere_stays_a_cancel(kind: Kind) -> None:
    assert await outcome(kind, 5.0, lambda: asyncio.sleep(5), 0.02) == ("CancelledError", False, "-")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_block_that_swallows_the_cancel_ends_normally_and_says_expired(kind: Kind) -> None:
    async def stubborn() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)

    assert await outcome(kind, 0.02, stubborn, None) == ("nothing", True, "nothing")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_zero_delay_expires_at_the_first_wait(kind: Kind) -> None:
    assert await outcome(kind, 0.0, lambda: asyncio.sleep(1), None) == ("TimeoutError", True, "nothing")


async def test_both_kinds_agree_on_every_scenario_above() -> None:
    """(The parametrized tests hold both to the same expectations; this says so in one place.)"""
    scenarios: list[tuple[float, Callable[[], Awaitable[object]], float | None]] = [
        (0.03, lambda: asyncio.sleep(5), None),
        (0.05, lambda: asyncio.sleep(0.001), None),
        (5.0, lambda: asyncio.sleep(5), 0.02),
    ]
    for delay_s, body, cancel_after in scenarios:
        assert await outcome(shared, delay_s, body, cancel_after) == await outcome(
            asyncio_timeout, delay_s, body, cancel_after
        )


async def test_outside_a_task_it_says_so() -> None:
    """(In a loop callback: a loop runs, no task does.)"""
    loop = asyncio.get_running_loop()
    said: asyncio.Future[str] = loop.create_future()

    def enter() -> None:
        try:
            with SharedTimeout(1):
                pass
        except RuntimeError as exc:
            said.set_result(str(exc))

    loop.call_soon(enter)
    assert "within a task" in await said
