"""Callback deliveries: one per callback owed, with every attempt to deliver it."""

from __future__ import annotations

import enum

import msgspec

from gengate.domain.dialect import Dialect
from gengate.domain.ids import time_prefix
from gengate.domain.randomness import token_urlsafe


class DeliveryState(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class DeliveryAttempt(msgspec.Struct, frozen=True, gc=False):
    """One try: when (`started_at`, Unix ms), the receiver's `status_code` (None when no answer
    came), `latency_ms`, and `error` (why it did not count as delivered)."""

    attempt: int
    started_at: int
    status_code: int | None
    latency_ms: int | None
    error: str | None


class Delivery(msgspec.Struct, frozen=True, gc=False, kw_only=True):
    """A callback owed for a finished task.

    Fields: `id` (the `webhook-id`, the same on every retry), `task_id`, `key_id`, `url`,
    `dialect` (whose status body to send), `state`, `attempts` (made so far), `round_start`
    (attempts made before the latest redelivery: the retry schedule counts from there),
    `next_attempt_at` (Unix ms, while pending), `created_at`, `completed_at`, `history`.
    """

    id: str
    task_id: str
    key_id: str
    url: str
    dialect: Dialect
    state: DeliveryState
    attempts: int = 0
    round_start: int = 0
    next_attempt_at: int | None = None
    created_at: int
    completed_at: int | None = None
    history: tuple[DeliveryAttempt, ...] = ()


class AttemptResult(msgspec.Struct, frozen=True):
    """What the sender records after an attempt: the attempt itself, and what comes next:
    `next_attempt_at` for a retry, else `state` delivered or failed."""

    attempt: DeliveryAttempt
    state: DeliveryState
    next_attempt_at: int | None = None


def new_delivery_id() -> str:
    """The `webhook-id`: like a task id (:func:`~gengate.domain.ids.new_task_id`), sorting by time."""
    return "msg_" + time_prefix() + token_urlsafe(16)
