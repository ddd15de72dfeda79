"""The seam between the store's logic and its drivers: statements, transactions, wake-ups.

The logic above the SQL (:mod:`gengate.store.sql_store` and the transactions of
:mod:`gengate.store.transactions`) is written once. A transaction is a generator that yields
:class:`Stmt`s and receives each one's result; a driver runs it: SQLite inside its writer
thread (so it joins a group commit), PostgreSQL with an await per statement on one pooled
connection in one transaction. Neither the logic nor the transactions know which.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, Protocol, TypeVar

import msgspec

from gengate.store.queries import Query
from gengate.store.rows import Row

T = TypeVar("T")


class Fetch(enum.Enum):
    """What a statement gives back to the transaction that yields it."""

    ROW = "row"  # the first row, or None
    ROWS = "rows"  # every row
    VALUE = "value"  # the first column of the first row, or None
    COUNT = "count"  # how many rows it changed


class Stmt(msgspec.Struct, frozen=True):
    query: Query
    params: Mapping[str, Any]
    fetch: Fetch = Fetch.ROW


#: A transaction: yields statements, receives their results, returns its value.
Tx = Generator[Stmt, Any, T]


def row(query: Query, **params: Any) -> Stmt:
    return Stmt(query, params, Fetch.ROW)


def rows(query: Query, **params: Any) -> Stmt:
    return Stmt(query, params, Fetch.ROWS)


def value(query: Query, **params: Any) -> Stmt:
    return Stmt(query, params, Fetch.VALUE)


def count(query: Query, **params: Any) -> Stmt:
    return Stmt(query, params, Fetch.COUNT)


class Changes(msgspec.Struct, frozen=True, kw_only=True):
    """What a committed write announces: tasks whose state changed (their waiters re-read),
    models with new work (`*`: any), running tasks asked to stop, callbacks newly owed."""

    tasks: Sequence[str] = ()
    work: Sequence[str] = ()
    cancel: Sequence[str] = ()
    deliveries: bool = False


NOTHING = Changes()


class Driver(Protocol):
    """One database: its compiled queries, reads, transactions and wake-ups after commit."""

    @property
    def queries(self) -> Mapping[str, Query]: ...

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def fetch(self, stmt: Stmt) -> Any:
        """One statement, outside any write transaction: a read."""
        ...

    async def read(self, tx: Tx[T]) -> T:
        """Several reads that belong together."""
        ...

    async def write(self, tx: Tx[T], changes: Callable[[T], Changes] | None = None) -> T:
        """One transaction, committed before it returns; `changes` of its value are announced
        after the commit (this process at once, the others soon)."""
        ...

    async def write_one(self, stmt: Stmt, changes: Callable[[Any], Changes] | None = None) -> Any:
        """One statement as its own transaction (PostgreSQL: one round trip, no BEGIN)."""
        ...

    async def claim(
        self, wanted: Mapping[str, int], owner: str, limit: int, lease_ms: int, caps: Mapping[str, int]
    ) -> list[Row]:
        """Take up to `limit` pending tasks, at most `wanted[model]` of each model and no more than
        `caps[model]` running over the whole cluster: each database does it its own way."""
        ...

    async def mark_files_removed(self, task_ids: Sequence[str]) -> None: ...

    def announce(self, changes: Changes) -> None: ...
