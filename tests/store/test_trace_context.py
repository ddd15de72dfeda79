"""The trace context of a task's submit, on both backends: stored with the task (either insert
path), handed to the worker with its claim and to the callback sender on request, and never
selected by a status read."""

from __future__ import annotations

import msgspec
from test_stores import LEASE, make_task

from gengate.store.base import Idempotency
from gengate.store.postgres import PostgresStore
from gengate.store.sqlite import SQLiteStore

AnyStore = SQLiteStore | PostgresStore
SUBMIT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_submit_context_goes_to_the_claim_and_the_sender_only(store: AnyStore) -> None:
    traced = msgspec.structs.replace(make_task(create_time=1), trace_context=SUBMIT)
    # The idempotent submit takes the shared insert; PostgreSQL's plain one its batched statement.
    again = msgspec.structs.replace(make_task(create_time=2), trace_context=SUBMIT.replace("01", "00"))
    untraced = make_task(create_time=3)
    await store.insert_task(traced)
    await store.insert_task(again, Idempotency("k1", "h1"))
    await store.insert_task(untraced)

    read = await store.get_task(traced.id)
    assert read is not None
    assert read.trace_context is None  # status reads leave the column alone
    assert await store.trace_context(traced.id) == SUBMIT
    assert await store.trace_context(again.id) == again.trace_context
    assert await store.trace_context(untraced.id) is None
    assert await store.trace_context("task_unknown") is None

    claimed = {claim.task.id: claim.task for claim in await store.claim({"m": 10}, "w1", 10, LEASE)}
    assert claimed[traced.id].trace_context == SUBMIT
    assert claimed[again.id].trace_context == again.trace_context
    assert claimed[untraced.id].trace_context is None
