"""Credits and admission caps on PostgreSQL: the rules of :mod:`sqlite_accounts`, in the
transaction that inserts or ends a task. A refusal raises the client's error, which rolls the
whole transaction back, so a refused submit leaves no row behind.

SQLite has one writer, so counting and then inserting is atomic there; here concurrent
transactions each see the last committed count, so a key's `max_concurrent` is counted under an
advisory lock of the key, held until commit.
"""

from __future__ import annotations

from typing import Any

from gengate.domain.errors import BadRequest, InvalidToken, TooManyRequests, Unavailable, UsedUp
from gengate.domain.ledger import MAX_CREDITS, LedgerKind, topup_amount
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store import postgres_queries as q
from gengate.store.base import Admission
from gengate.store.sqlite_accounts import CONCURRENCY_RETRY_S, QUEUE_FULL_RETRY_S

Connection = Any  # an asyncpg connection, pooled or not


async def admit(conn: Connection, task: Task, admission: Admission | None) -> None:
    if admission is None:
        return
    # Not locked: the queue cap keeps a queue bounded, where a few concurrent submits over it do
    # no harm, and a lock would serialise every submit of the model.
    if (
        admission.max_queue is not None
        and await conn.fetchval(q.QUEUE_DEPTH_UPTO, task.model, admission.max_queue) >= admission.max_queue
    ):
        raise Unavailable(
            f"The queue of model '{task.model}' is full ({admission.max_queue} tasks waiting); retry later.",
            headers={"Retry-After": str(QUEUE_FULL_RETRY_S)},
        )
    if admission.max_concurrent is not None:
        await conn.execute(q.LOCK_ADMISSION, f"gengate-key:{task.key_id}")
        active = await conn.fetchval(q.ACTIVE_OF_KEY_UPTO, task.key_id, admission.max_concurrent)
        if active >= admission.max_concurrent:
            raise TooManyRequests(
                f"This key already has {admission.max_concurrent} unfinished tasks, its limit; "
                "submit again when one ends.",
                headers={"Retry-After": str(CONCURRENCY_RETRY_S)},
            )


async def charge(conn: Connection, task: Task, now: int) -> None:
    if task.charge <= 0:
        return
    balance = await conn.fetchval(q.CHARGE_KEY, task.key_id, task.charge)
    if balance is None:
        row = await conn.fetchrow(q.KEY_CREDITS, task.key_id)
        if row is None:
            raise InvalidToken
        if row[0] is not None:
            raise UsedUp(f"This task costs {task.charge} credits and the key has {row[0]} left.")
    await write_ledger(conn, task.key_id, LedgerKind.CHARGE, -task.charge, balance, task.id, now)


async def refund_once(conn: Connection, task: Task, now: int) -> None:
    if task.charge <= 0 or task.state is not TaskState.FAILED:
        return
    entry = await conn.fetchval(q.INSERT_REFUND, task.key_id, task.id, task.charge, now)
    if entry is None:  # refunded already
        return
    credited = await conn.fetchval(q.CREDIT_KEY, task.key_id, task.charge)
    if credited is not None:
        await conn.execute(q.SET_LEDGER_BALANCE, entry, credited)


async def add_credits(conn: Connection, key_id: str, amount: int, now: int) -> bool:
    balance = await conn.fetchval(q.ADD_CREDITS, key_id, amount, MAX_CREDITS)
    if balance is None:
        current = await conn.fetchrow(q.KEY_CREDITS, key_id)
        if current is None:
            return False
        if current[0] is None:
            raise BadRequest("add_credits: the key has unlimited credits; set `credits` first.")
        raise BadRequest(f"add_credits: the balance ({current[0]}) would leave the range 0 to {MAX_CREDITS}.")
    await write_ledger(conn, key_id, LedgerKind.TOPUP, amount, balance, None, now)
    return True


async def record_new_balance(
    conn: Connection, key_id: str, old: int | None, new: int | None, now: int
) -> None:
    if old == new:
        return
    amount = topup_amount(old, new)
    await write_ledger(conn, key_id, LedgerKind.TOPUP, amount, new, None, now)


async def write_ledger(  # noqa: PLR0917 - one argument per ledger column
    conn: Connection,
    key_id: str,
    kind: LedgerKind,
    amount: int,
    balance: int | None,
    task_id: str | None,
    now: int,
) -> None:
    await conn.execute(q.INSERT_LEDGER, key_id, task_id, kind.value, amount, balance, now)
