"""The store's transactions, written once for both drivers (see :mod:`gengate.store.sql`).

Each takes the driver's compiled queries and yields statements; the charge of a submit, the
end of a task (state, outbox row, refund) and an admin's top-up are each one function here,
so every path that ends a task ends it the same way. A refusal raises the client's error,
and the driver rolls the transaction back, so a refused submit leaves no row behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gengate.domain import admission as refusals
from gengate.domain.deliveries import Delivery, DeliveryState, new_delivery_id
from gengate.domain.endings import Ending
from gengate.domain.errors import BadRequest, Conflict, InvalidToken
from gengate.domain.ledger import MAX_CREDITS, LedgerKind, topup_amount
from gengate.domain.states import TaskState
from gengate.domain.task import Task
from gengate.store.base import IDEMPOTENCY_TTL_MS, Admission, Idempotency
from gengate.store.handover import CallbackLease
from gengate.store.queries import Query
from gengate.store.rows import task_from_row, task_params
from gengate.store.sql import Tx, count, row, value

Queries = Mapping[str, Query]


def insert_task(
    q: Queries, task: Task, idempotency: Idempotency | None, admission: Admission | None
) -> Tx[Task]:
    """The whole submit: the idempotency key, the admission caps, the charge, the task."""
    if idempotency is not None:
        owned = yield value(
            q["claim_idempotency"],
            key_id=task.key_id,
            idem_key=idempotency.key,
            request_hash=idempotency.request_hash,
            task_id=task.id,
            now=task.create_time,
            since=task.create_time - IDEMPOTENCY_TTL_MS,
        )
        if owned is None:
            seen = yield row(q["get_idempotency"], key_id=task.key_id, idem_key=idempotency.key)
            if seen is None or seen[0] != idempotency.request_hash:
                raise Conflict("This Idempotency-Key was used with a different request in the last 24 hours.")
            existing = yield row(q["get_task"], id=seen[1])
            if existing is not None:
                return task_from_row(existing)  # a replay: charged once, at its first submit
    yield from admit(q, task, admission)
    yield from charge(q, task)
    yield count(q["insert_task"], **task_params(task))
    return task


def admit(q: Queries, task: Task, admission: Admission | None) -> Tx[None]:
    """Refuse the task when its model's queue is full or its key already has `max_concurrent`
    unfinished tasks; counted in the insert's transaction, so concurrent submits cannot all
    slip under a cap (PostgreSQL: under an advisory lock of the key, held until commit)."""
    if admission is None:
        return
    if admission.max_queue is not None:
        pending = yield value(q["pending_of_model"], model=task.model, cap=admission.max_queue)
        if pending is not None and pending >= admission.max_queue:
            raise refusals.queue_full(task.model, admission.max_queue)
    if admission.max_concurrent is not None:
        if "lock_admission" in q:
            yield row(q["lock_admission"], lock=f"gengate-key:{task.key_id}")
        active = yield value(q["active_of_key_upto"], key_id=task.key_id, cap=admission.max_concurrent)
        if active >= admission.max_concurrent:
            raise refusals.too_many_unfinished(admission.max_concurrent)


def charge(q: Queries, task: Task) -> Tx[None]:
    """Take `task.charge` from its key with its ledger row; `used_up` when a limited key's
    balance does not cover it. An unlimited key is charged on the ledger only."""
    if task.charge <= 0:
        return
    # A row with NULL (SQLite's charge_key): an unlimited key. No row: key_credits tells.
    charged = yield row(q["charge_key"], key_id=task.key_id, amount=task.charge)
    balance = None if charged is None else charged[0]
    if charged is None:
        credits = yield row(q["key_credits"], key_id=task.key_id)
        if credits is None:
            raise InvalidToken
        if credits[0] is not None:
            raise refusals.used_up(task.charge, credits[0])
    yield from write_ledger(
        q, task.key_id, LedgerKind.CHARGE, -task.charge, balance, task.id, task.create_time
    )


def end_task(q: Queries, task: Task, ending: Ending, now: int, first_delay_ms: int) -> Tx[Task]:
    """What follows a task's end, in the transaction that ended it: the outbox row of its
    callback (no crash can lose it), and the refund an ending owes, at most once per task."""
    ended, _handed = yield from end_task_handing(q, task, ending, now, first_delay_ms, lease=None)
    return ended


def end_task_handing(
    q: Queries, task: Task, ending: Ending, now: int, first_delay_ms: int, *, lease: CallbackLease | None
) -> Tx[tuple[Task, Delivery | None]]:
    """:func:`end_task`, its callback's row leased by `lease` when one is given and the callback is
    due at once: that delivery is returned, to be handed over once committed
    (:mod:`gengate.store.handover`)."""
    handed = None
    if task.callback_url:
        owed: dict[str, Any] = {
            "id": new_delivery_id(),
            "task_id": task.id,
            "key_id": task.key_id,
            "url": task.callback_url,
            "dialect": task.dialect,
        }
        leased = lease if first_delay_ms <= 0 else None
        yield count(
            q["insert_delivery"],
            **owed,
            now=now,
            first_delay=first_delay_ms,
            owner=leased.owner if leased else None,
            expires=now + leased.lease_ms if leased else None,
        )
        if leased:
            handed = Delivery(**owed, state=DeliveryState.PENDING, next_attempt_at=now, created_at=now)
    if ending.refund and task.charge > 0 and task.state is TaskState.FAILED:
        entry = yield value(
            q["insert_refund"], key_id=task.key_id, task_id=task.id, amount=task.charge, now=now
        )
        if entry is not None:  # else refunded already
            credited = yield value(q["credit_key"], key_id=task.key_id, amount=task.charge)
            if credited is not None:
                yield count(q["set_ledger_balance"], id=entry, balance=credited)
    return task, handed


def add_credits(q: Queries, key_id: str, amount: int, now: int) -> Tx[bool]:
    """An admin's atomic top-up of a limited key, with its ledger row; False when there is no
    such key. `bad_request` for an unlimited key or a balance that would leave 0..MAX_CREDITS."""
    balance = yield value(q["add_credits"], key_id=key_id, amount=amount, max=MAX_CREDITS)
    if balance is None:
        current = yield row(q["key_credits"], key_id=key_id)
        if current is None:
            return False
        if current[0] is None:
            raise BadRequest("add_credits: the key has unlimited credits; set `credits` first.")
        raise BadRequest(f"add_credits: the balance ({current[0]}) would leave the range 0 to {MAX_CREDITS}.")
    yield from write_ledger(q, key_id, LedgerKind.TOPUP, amount, balance, None, now)
    return True


def record_new_balance(q: Queries, key_id: str, old: int | None, new: int | None, now: int) -> Tx[None]:
    """The ledger row of an admin setting a balance (or a new key's first one): the difference
    as a top-up. Becoming unlimited writes a zero row with no balance; from unlimited, the
    whole new balance."""
    if old != new:
        yield from write_ledger(q, key_id, LedgerKind.TOPUP, topup_amount(old, new), new, None, now)


def write_ledger(  # noqa: PLR0917 - one argument per ledger column
    q: Queries,
    key_id: str,
    kind: LedgerKind,
    amount: int,
    balance: int | None,
    task_id: str | None,
    now: int,
) -> Tx[None]:
    params: dict[str, Any] = {
        "key_id": key_id,
        "task_id": task_id,
        "kind": kind.value,
        "amount": amount,
        "balance": balance,
        "now": now,
    }
    yield count(q["insert_ledger"], **params)
