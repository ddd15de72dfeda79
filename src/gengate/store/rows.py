"""Rows of either backend to records and back: both read their columns in the orders of
:mod:`gengate.store.queries`, by position."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import msgspec
import orjson

from gengate.domain.deliveries import Delivery, DeliveryAttempt, DeliveryState
from gengate.domain.endings import Succeeded
from gengate.domain.keys import ApiKey
from gengate.domain.ledger import LedgerEntry, LedgerKind
from gengate.domain.states import TaskState
from gengate.domain.task import ResultFile, Task
from gengate.store.queries import KEY_COLUMNS, TASK_COLUMNS


class Row(Protocol):
    """A result row of either backend: a sqlite3 tuple or an asyncpg Record, read by position."""

    def __getitem__(self, index: int, /) -> Any: ...


_files_decoder = msgspec.json.Decoder(list[tuple[str, str, int]])
_STATES = {state.value: state for state in TaskState}


def delivery_from_row(row: Row, history: tuple[DeliveryAttempt, ...] = ()) -> Delivery:
    return Delivery(
        id=row[0],
        task_id=row[1],
        key_id=row[2],
        url=row[3],
        dialect=row[4],
        state=DeliveryState(row[5]),
        attempts=row[6],
        round_start=row[7],
        next_attempt_at=row[8],
        created_at=row[9],
        completed_at=row[10],
        history=history,
    )


def task_params(task: Task) -> dict[str, Any]:
    """A task as the parameters of insert_task, by column."""
    values = (
        task.id,
        task.key_id,
        task.model,
        task.mode,
        task.state.value,
        task.input_json,
        task.request_json,
        task.request_type,
        task.callback_url,
        task.priority,
        task.create_time,
        task.start_time,
        task.complete_time,
        task.cost_time,
        task.progress,
        files_json(task.files) if task.files else None,
        task.fail_code,
        task.fail_msg,
        task.attempts,
        task.lease_owner,
        task.lease_expires,
        task.trace_id,
        task.dialect,
        task.upstream,
        task.charge,
        task.output_json,
    )
    params = dict(zip(TASK_COLUMNS, values, strict=True))
    params["trace_context"] = task.trace_context  # inserted, not among the columns reads select
    return params


def task_from_row(row: Row, trace_context: str | None = None) -> Task:
    files = row[15]
    return Task(
        id=row[0],
        key_id=row[1],
        model=row[2],
        mode=row[3],
        state=_STATES[row[4]],
        input_json=row[5],
        request_json=row[6],
        request_type=row[7],
        callback_url=row[8],
        priority=row[9],
        create_time=row[10],
        start_time=row[11],
        complete_time=row[12],
        cost_time=row[13],
        progress=row[14],
        files=tuple(ResultFile(*f) for f in _files_decoder.decode(files)) if files else (),
        fail_code=row[16],
        fail_msg=row[17],
        attempts=row[18],
        lease_owner=row[19],
        lease_expires=row[20],
        trace_id=row[21],
        dialect=row[22],
        upstream=row[23],
        charge=row[24],
        output_json=row[25],
        trace_context=trace_context,
    )


def succeeded_task(claimed: Task, outcome: Succeeded, now: int, upstream: str | None, cost_time: int) -> Task:
    """The row finish_success_claimed leaves, from the task as claimed and what it read back:
    everything else of the row is the claim's, as the fence (owner, attempt) kept it."""
    return msgspec.structs.replace(
        claimed,
        state=TaskState.SUCCESS,
        complete_time=now,
        cost_time=cost_time,
        progress=100,
        files=outcome.files,
        output_json=outcome.output_json,
        fail_code=None,
        fail_msg=None,
        lease_owner=None,
        lease_expires=None,
        upstream=upstream,
        trace_context=None,  # as task_from_row: kept apart from the task's reads
    )


def claimed_task_from_row(row: Row) -> Task:
    """A claim's row: the task's columns, then its trace context (selected by claims only)."""
    return task_from_row(row, row[_TRACE_CONTEXT_AT])


_TRACE_CONTEXT_AT = len(TASK_COLUMNS)


def file_names(files: str | None) -> tuple[str, ...]:
    """The names in a `files` column, without building whole `ResultFile`s."""
    return tuple(f[0] for f in _files_decoder.decode(files)) if files else ()


def files_json(files: Sequence[ResultFile]) -> str:
    return orjson.dumps([(f.name, f.content_type, f.size) for f in files]).decode()


def models_json(models: tuple[str, ...] | None) -> str | None:
    return orjson.dumps(list(models)).decode() if models is not None else None


def key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row[0],
        name=row[1],
        key_hash=row[2],
        prefix=row[3],
        disabled=bool(row[4]),
        expires_at=row[5],
        models=tuple(orjson.loads(row[6])) if row[6] is not None else None,
        created_at=row[7],
        webhook_secret_version=row[8],
        credits=row[9],
        rate_limit=row[10],
        max_concurrent=row[11],
    )


def key_params(key: ApiKey) -> dict[str, Any]:
    """A key as the parameters of insert_key and update_key, by column."""
    values = (
        key.id,
        key.name,
        key.key_hash,
        key.prefix,
        int(key.disabled),
        key.expires_at,
        models_json(key.models),
        key.created_at,
        key.webhook_secret_version,
        key.credits,
        key.rate_limit,
        key.max_concurrent,
    )
    return dict(zip(KEY_COLUMNS, values, strict=True))


def ledger_from_row(row: Row) -> LedgerEntry:
    """A ledger row in the order of LEDGER_COLUMNS."""
    return LedgerEntry(
        id=row[0],
        key_id=row[1],
        kind=LedgerKind(row[2]),
        amount=row[3],
        balance=row[4],
        task_id=row[5],
        created_at=row[6],
    )
