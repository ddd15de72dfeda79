"""Credits and admission caps in SQL, run inside the SQLite writer's transactions.

Each function takes the connection of the transaction that inserts or ends a task: a charge
commits with its task and a refund with the task's end, or neither does. A function that
refuses raises the client's error; the writer rolls back that operation's savepoint, so a
refused submit leaves no row behind. The statements are in :mod:`sqlite_queries`.
"""

from __future__ import annotations

import sqlite3

from gengate.domain.errors import BadRequest, InvalidToken, TooManyRequests, Unavailable, UsedUp
from gengate.domain.ledger import MAX_CREDITS, LedgerKind, topup_amount
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store import sqlite_queries as q
from gengate.store.base import Admission

#: What a client waits before submitting again to a full queue, or with all its slots taken.
QUEUE_FULL_RETRY_S = 5
CONCURRENCY_RETRY_S = 1


def admit(conn: sqlite3.Connection, task: Task, admission: Admission | None) -> None:
    """Refuse the task when its model's queue is full (`unavailable`) or its key already has
    `max_concurrent` unfinished tasks (`too_many_requests`). Counted in the insert's
    transaction, so concurrent submits cannot all slip under a cap."""
    if admission is None:
        return
    if admission.max_queue is not None:
        row = conn.execute(q.PENDING_OF_MODEL, {"model": task.model}).fetchone()
        if row is not None and row[0] >= admission.max_queue:
            raise Unavailable(
                f"The queue of model '{task.model}' is full ({admission.max_queue} tasks waiting); "
                "retry later.",
                headers={"Retry-After": str(QUEUE_FULL_RETRY_S)},
            )
    if admission.max_concurrent is not None:
        params = {"key_id": task.key_id, "cap": admission.max_concurrent}
        if conn.execute(q.ACTIVE_OF_KEY_UPTO, params).fetchone()[0] >= admission.max_concurrent:
            raise TooManyRequests(
                f"This key already has {admission.max_concurrent} unfinished tasks, its limit; "
                "submit again when one ends.",
                headers={"Retry-After": str(CONCURRENCY_RETRY_S)},
            )


def charge(conn: sqlite3.Connection, task: Task, now: int) -> None:
    """Take `task.charge` credits from its key and write the ledger row; `used_up` when a
    limited key's balance does not cover it. An unlimited key is charged on the ledger only."""
    if task.charge <= 0:
        return
    row = conn.execute(q.CHARGE_KEY, {"key_id": task.key_id, "amount": task.charge}).fetchone()
    if row is not None:
        balance = row[0]
    else:
        row = conn.execute(q.KEY_CREDITS, (task.key_id,)).fetchone()
        if row is None:
            raise InvalidToken
        if row[0] is not None:
            raise UsedUp(f"This task costs {task.charge} credits and the key has {row[0]} left.")
        balance = None
    write_ledger(
        conn,
        task.key_id,
        kind=LedgerKind.CHARGE,
        amount=-task.charge,
        balance=balance,
        task_id=task.id,
        now=now,
    )


def refund_once(conn: sqlite3.Connection, task: Task, now: int) -> None:
    """Give a failed (or canceled) task's charge back, at most once per task: called by
    every path that ends a task failed, in the transaction that ends it."""
    if task.charge <= 0 or task.state is not TaskState.FAILED:
        return
    params = {"key_id": task.key_id, "task_id": task.id, "amount": task.charge, "now": now}
    entry = conn.execute(q.INSERT_REFUND, params).fetchone()
    if entry is None:  # refunded already
        return
    credited = conn.execute(q.CREDIT_KEY, {"key_id": task.key_id, "amount": task.charge}).fetchone()
    if credited is not None:
        conn.execute(q.SET_LEDGER_BALANCE, {"balance": credited[0], "id": entry[0]})


def add_credits(conn: sqlite3.Connection, key_id: str, amount: int, now: int) -> bool:
    """An admin's atomic top-up of a limited key, with its ledger row; False when there is no
    such key. `bad_request` for an unlimited key or a balance that would leave 0..MAX_CREDITS."""
    params = {"key_id": key_id, "amount": amount, "max": MAX_CREDITS}
    row = conn.execute(q.ADD_CREDITS, params).fetchone()
    if row is None:
        current = conn.execute(q.KEY_CREDITS, (key_id,)).fetchone()
        if current is None:
            return False
        if current[0] is None:
            raise BadRequest("add_credits: the key has unlimited credits; set `credits` first.")
        raise BadRequest(f"add_credits: the balance ({current[0]}) would leave the range 0 to {MAX_CREDITS}.")
    write_ledger(conn, key_id, kind=LedgerKind.TOPUP, amount=amount, balance=row[0], task_id=None, now=now)
    return True


def record_new_balance(
    conn: sqlite3.Connection, key_id: str, old: int | None, new: int | None, now: int
) -> None:
    """The ledger row of an admin setting a balance (or a new key's first one): the difference
    as a top-up. Becoming unlimited writes a zero row with no balance; from unlimited, the
    whole new balance."""
    if old == new:
        return
    amount = topup_amount(old, new)
    write_ledger(conn, key_id, kind=LedgerKind.TOPUP, amount=amount, balance=new, task_id=None, now=now)


def write_ledger(
    conn: sqlite3.Connection,
    key_id: str,
    *,
    kind: LedgerKind,
    amount: int,
    balance: int | None,
    task_id: str | None,
    now: int,
) -> None:
    conn.execute(
        q.INSERT_LEDGER,
        {
            "key_id": key_id,
            "task_id": task_id,
            "kind": kind.value,
            "amount": amount,
            "balance": balance,
            "now": now,
        },
    )
