"""Circuit breakers: a provider that keeps failing is skipped for a while, then tried again.

purgatory keeps each breaker's state machine: closed; open after `breaker_failures` failures in
a row; half-open once `breaker_reset_s` have passed (the next run goes through); closed again
after a success, open again after a failure. Only failures that are not the client's fault
count (a transient :class:`ProviderFailure`, or an unexpected error); a client's bad input or a
content violation says nothing about the provider's health, and a cancel says nothing at all.
State is per process: every worker process learns about an upstream on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from purgatory import AsyncCircuitBreakerFactory
from purgatory.domain.model import Context, OpenedState

from gengate.providers.base import ProviderFailure

log = logging.getLogger(__name__)

CircuitState = Literal["closed", "open", "half_open"]
CIRCUIT_STATES: tuple[CircuitState, ...] = ("closed", "open", "half_open")


class CircuitOpen(Exception):
    """The provider's circuit is open: skip it."""

    def __init__(self, name: str) -> None:
        super().__init__(f"the circuit of provider {name!r} is open")
        self.name = name


def _clients_fault(exc: BaseException) -> bool:
    return isinstance(exc, ProviderFailure) and not exc.transient


class Breakers:
    """One breaker per provider name, with that provider's limits."""

    def __init__(self) -> None:
        self._factory = AsyncCircuitBreakerFactory(
            exclude=[(ProviderFailure, _clients_fault), asyncio.CancelledError]
        )
        self._factory.add_listener(_log_change)
        self._limits: dict[str, tuple[int, float]] = {}
        self._contexts: dict[str, Context] = {}

    def add(self, name: str, failures: int, reset_s: float) -> None:
        """Guard provider `name`: open after `failures` failures in a row, for `reset_s` seconds."""
        self._limits[name] = (failures, reset_s)

    def __contains__(self, name: object) -> bool:
        return name in self._limits

    @contextlib.asynccontextmanager
    async def guard(self, name: str) -> AsyncIterator[None]:
        """Run the body through `name`'s breaker; raises :class:`CircuitOpen` instead when open."""
        failures, reset_s = self._limits[name]
        breaker = await self._factory.get_breaker(name, threshold=failures, ttl=reset_s)
        self._contexts[name] = breaker.context
        try:
            async with breaker:
                yield
        except OpenedState:
            raise CircuitOpen(name) from None

    def state(self, name: str) -> CircuitState:
        """`open` only while runs are refused: past its reset time an open circuit reads half-open."""
        context = self._contexts.get(name)
        if context is None or context.state == "closed":
            return "closed"
        if context.state == "opened" and time.time() < (context.opened_at or 0.0) + context.ttl:
            return "open"
        return "half_open"

    def states(self) -> dict[str, CircuitState]:
        """Every guarded provider's state, by name."""
        return {name: self.state(name) for name in self._limits}


def _log_change(name: str, event_type: str, event: Any) -> None:
    if event_type == "state_changed":
        log.warning("provider %s: circuit %s", name, getattr(event, "state", "?"))
