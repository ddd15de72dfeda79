"""Handing a task's callback to this process's sender in the transaction that ends the task.

A callback owed is an outbox row, written in the task's ending transaction (no crash loses it),
which a sender then claims. When the task ends in a process whose sender has a slot free, the
row is written already leased to that sender and handed over with the task once committed: the
claim's write, its commit and the read of the task are saved, one of each per callback. Should
the process die first, the lease runs out and any sender claims the row, as after a crash
mid-attempt.
"""

from __future__ import annotations

from typing import Protocol

import msgspec

from gengate.domain.deliveries import Delivery
from gengate.domain.task import Task


class CallbackLease(msgspec.Struct, frozen=True):
    """Who takes the callback (a sender's lease owner), and for how long the row is leased."""

    owner: str
    lease_ms: int


class CallbackIntake(Protocol):
    """A sender that takes callbacks handed over (see the module's docstring)."""

    def lease(self) -> CallbackLease | None:
        """A slot reserved for one callback, or None: leave it to the claims. Each lease is
        given back once: `take` when a callback was handed over, `unlease` when none was."""

    def take(self, delivery: Delivery, task: Task) -> None:
        """The callback of a committed ending, leased as `lease` said."""

    def unlease(self) -> None:
        """The ending owed no callback (or failed): the slot reserved is free again."""
