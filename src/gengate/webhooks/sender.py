"""Delivering the callback outbox: signed, retried on a schedule, never to a forbidden address.

Due deliveries are claimed under a lease (so several senders never send one twice at
once), each sent in its own coroutine (a slow receiver holds up nobody else), and every
attempt is recorded with what follows it. The sender connects to the address the SSRF guard
checked, never resolving the name a second time, and follows no redirect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from standardwebhooks.webhooks import Webhook

from gengate.background import report, spawn
from gengate.dialects import CALLBACK_LOGS, Links, render_callback
from gengate.domain.callback_schedule import delay_after
from gengate.domain.clock import now_ms
from gengate.domain.deliveries import AttemptResult, Delivery, DeliveryAttempt, DeliveryState
from gengate.domain.task import Task
from gengate.metrics import Metrics
from gengate.net.bounded import ACCEPT_ENCODING, aread_prefix
from gengate.net.guard import (
    RESOLVE_TIMEOUT_S,
    AddressPolicy,
    CheckedTarget,
    UnsafeUrl,
    parse_callback_url,
    resolve_and_check,
)
from gengate.observability import tracing
from gengate.observability.context import bound_task, trace_headers
from gengate.store.base import Store
from gengate.store.notify import ChangeHub
from gengate.wire import parse_retry_after

log = logging.getLogger(__name__)

USER_AGENT = "gengate-webhooks/1"
#: The longest a receiver's Retry-After may postpone the next attempt.
MAX_RETRY_AFTER_S = 24 * 3600
#: Added to the longest an attempt can take (resolve, then send) to make the delivery lease.
LEASE_MARGIN_S = 30.0
#: The most a receiver's error body is kept in the attempt record.
ERROR_EXCERPT = 200
#: The most of a receiver's answer read (raw bytes, about): a short answer is read whole, so its
#: connection is kept alive; a longer one is cut off with its connection.
ANSWER_SCAN = 4096


@dataclass(frozen=True, slots=True)
class Outcome:
    """An attempt's result as the retry policy sees it."""

    status_code: int | None
    error: str | None
    retry_after_s: float | None = None
    #: No retry can succeed (a URL the guard refuses for good): fail now, not in a day and a half.
    permanent: bool = False

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        return self.status_code == 410


def signed_headers(
    target: CheckedTarget, message_id: str, body: bytes, secret: str, user_agent: str = USER_AGENT
) -> dict[str, str]:
    """The headers of one signed POST to a checked address: Standard Webhooks' id, timestamp
    and signature (one HMAC over the body), and the `Host` of the URL the address came from."""
    sent_at = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "user-agent": user_agent,
        "accept-encoding": ACCEPT_ENCODING,
        "host": target.host_header(),
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body.decode()),
    }


def next_step(
    outcome: Outcome, attempts_in_round: int, schedule: Sequence[float], now: int
) -> tuple[DeliveryState, int | None]:
    """Delivered, failed for good, or when to try again: `schedule[k]` seconds after the k-th
    attempt of this round, or later if the receiver's Retry-After asks for it."""
    if outcome.delivered:
        return DeliveryState.DELIVERED, None
    delay = delay_after(schedule, attempts_in_round)
    if outcome.gone or outcome.permanent or delay is None:
        return DeliveryState.FAILED, None
    if outcome.retry_after_s is not None:
        delay = max(delay, min(outcome.retry_after_s, MAX_RETRY_AFTER_S))
    return DeliveryState.PENDING, now + int(delay * 1000)


def _refused_for_good(url: str) -> bool:
    """A malformed URL, or an address literal the guard refuses, cannot become deliverable; a
    name might resolve elsewhere later (or the operator admit its range), so it is retried."""
    try:
        return parse_callback_url(url).ip is not None
    except UnsafeUrl:
        return True


@dataclass
class WebhookSender:
    store: Store
    hub: ChangeHub
    #: The signed result URLs a callback body names (the API's status bodies name the same).
    links: Links
    #: The `whsec_...` secret of a key id.
    secret_for: Callable[[str], Awaitable[str]]
    policy: AddressPolicy
    schedule: Sequence[float]
    metrics: Metrics
    timeout_s: float = 10.0
    concurrency: int = 64
    #: Held while one attempt runs: past it (a sender that died mid-attempt) another takes over.
    #: 0 derives it from the longest an attempt can take, so a slow attempt is never sent twice.
    lease_ms: int = 0
    idle_poll_s: float = 5.0
    owner: str = field(default_factory=lambda: "s_" + secrets.token_hex(6))
    _client: httpx.AsyncClient | None = None
    _loop_task: asyncio.Task[None] | None = None
    _inflight: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.lease_ms <= 0:
            self.lease_ms = int((self.timeout_s + RESOLVE_TIMEOUT_S + LEASE_MARGIN_S) * 1000)

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout_s),
            follow_redirects=False,
            trust_env=False,  # a proxy would resolve the name itself: the guard would be moot
            limits=httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency),
        )
        self._loop_task = spawn(self._run(), "the callback sender", name="gengate-webhooks")

    async def stop(self, grace_s: float = 5.0) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        if self._inflight:
            _done, pending = await asyncio.wait(self._inflight, timeout=grace_s)
            for task in pending:
                task.cancel()  # its lease expires and another sender (or the next start) retries
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _run(self) -> None:
        while True:
            claimed = 0
            try:
                free = self.concurrency - len(self._inflight)
                if free > 0:
                    for delivery in await self.store.claim_deliveries(self.owner, free, self.lease_ms):
                        claimed += 1
                        task = spawn(
                            self.deliver(delivery),
                            f"callback {delivery.id} of task {delivery.task_id}",
                            name=f"gengate-webhook-{delivery.id}",
                        )
                        self._inflight.add(task)
                        task.add_done_callback(self._done)
                if claimed:
                    continue
                await self.hub.wait_deliveries(await self._idle_wait())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                report(log, "claiming callbacks failed (trying again)", exc)
                await asyncio.sleep(1.0)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self.hub.deliveries_added()  # a slot is free

    async def _idle_wait(self) -> float:
        if len(self._inflight) >= self.concurrency:
            return self.idle_poll_s
        due = await self.store.next_delivery_due()
        if due is None:
            return self.idle_poll_s
        return min(self.idle_poll_s, max(0.0, (due - now_ms()) / 1000))

    async def deliver(self, delivery: Delivery) -> None:
        """One attempt, recorded; its lines (httpx's too) name the task and its trace id."""
        try:
            task = await self.store.get_task(delivery.task_id)
            traceparent = await self.store.trace_context(delivery.task_id) if tracing.active() else None
        except Exception:  # the attempt reads it again, and records what goes wrong
            task, traceparent = None, None
        trace_id = task.trace_id if task else None
        with (
            bound_task(delivery.task_id, trace_id, callback=delivery.id),
            tracing.callback_span(delivery, traceparent, trace_id),
        ):
            await self._deliver(delivery, task)

    async def _deliver(self, delivery: Delivery, task: Task | None) -> None:
        attempt_no = delivery.attempts + 1
        started = now_ms()
        clock = time.perf_counter()
        try:
            outcome = await self._attempt(delivery, task)
        except asyncio.CancelledError:
            # Stopping: record the attempt so that its lease ends now and the next start (or
            # another sender) retries on schedule instead of waiting the lease out.
            outcome = Outcome(None, "interrupted: the gateway stopped during the attempt")
            with contextlib.suppress(Exception):
                await self._record(delivery, attempt_no, started, outcome, None)
            raise
        except Exception as exc:
            # Still an attempt on the schedule: an unrecorded one would hold its lease and loop.
            report(log, f"callback {delivery.id} failed inside the gateway", exc)
            outcome = Outcome(None, "internal error in the gateway while sending")
        tracing.answered(outcome.status_code, outcome.error)
        latency_ms = int((time.perf_counter() - clock) * 1000) if outcome.status_code is not None else None
        await self._record(delivery, attempt_no, started, outcome, latency_ms)

    async def _record(
        self, delivery: Delivery, attempt_no: int, started: int, outcome: Outcome, latency_ms: int | None
    ) -> None:
        state, next_at = next_step(outcome, attempt_no - delivery.round_start, self.schedule, now_ms())
        result = AttemptResult(
            DeliveryAttempt(attempt_no, started, outcome.status_code, latency_ms, outcome.error),
            state,
            next_at,
        )
        self._count(state, delivery, latency_ms)
        told = f"HTTP {outcome.status_code}" if outcome.status_code is not None else outcome.error
        log.info("callback %s attempt %d: %s; now %s", delivery.id, attempt_no, told, state.value)
        if not await self.store.record_attempt(delivery, self.owner, result):
            log.warning("attempt %d of callback %s not recorded: its lease was lost", attempt_no, delivery.id)

    def _count(self, state: DeliveryState, delivery: Delivery, latency_ms: int | None) -> None:
        outcome = {DeliveryState.PENDING: "retry"}.get(state, state.value)
        self.metrics.webhook_attempts.labels(outcome).inc()
        if latency_ms is not None:
            self.metrics.webhook_latency.observe(latency_ms / 1000)
        if state is DeliveryState.DELIVERED:
            now = now_ms()
            self.metrics.webhook_delay.observe(max(0, now - delivery.created_at) / 1000)
            due = delivery.next_attempt_at or delivery.created_at
            self.metrics.webhook_lag.observe(max(0, now - due) / 1000)

    async def _attempt(self, delivery: Delivery, task: Task | None = None) -> Outcome:
        assert self._client is not None, "sender not started"
        if task is None:
            task = await self.store.get_task(delivery.task_id)
        if task is None:
            return Outcome(None, "the task no longer exists")
        try:
            target = await resolve_and_check(delivery.url, self.policy)
        except UnsafeUrl as exc:
            return Outcome(None, f"refused: {exc}", permanent=_refused_for_good(delivery.url))
        logs = await self.store.task_logs(task.id) if task.dialect in CALLBACK_LOGS else None
        body = render_callback(task.dialect, task, self.links, logs)
        headers = signed_headers(target, delivery.id, body, await self.secret_for(delivery.key_id))
        headers.update(trace_headers())  # the task's trace id, for the receiver's own logs
        headers.update(tracing.span_headers())  # and the attempt's span, when tracing is on
        request = self._client.build_request(
            "POST", target.ip_url(), content=body, headers=headers, extensions={"sni_hostname": target.host}
        )
        try:
            # httpx's timeout bounds each read; this bounds the whole attempt, so a receiver
            # trickling its answer a byte at a time cannot hold the attempt (and its lease).
            async with asyncio.timeout(self.timeout_s):
                response = await self._client.send(request, stream=True)
                try:
                    # Only an error's excerpt is kept: read a few KB of the answer, inflate only the
                    # excerpt. A receiver's gigabyte (or gzip bomb) is never read, on any status.
                    keep = 0 if response.is_success else ERROR_EXCERPT
                    excerpt = await aread_prefix(response, keep, scan=ANSWER_SCAN)
                finally:
                    await response.aclose()
        except (httpx.TimeoutException, TimeoutError):
            return Outcome(None, f"no answer within {self.timeout_s:g} s")
        except httpx.HTTPError as exc:
            return Outcome(None, f"{type(exc).__name__}: {exc}"[:ERROR_EXCERPT] or type(exc).__name__)
        status = response.status_code
        if 200 <= status < 300:
            return Outcome(status, None)
        error = f"HTTP {status}"
        if response.is_redirect:
            error += " (redirects are not followed)"
        if text := excerpt.text():
            error += f": {text}"
        return Outcome(status, error, parse_retry_after(response.headers.get("retry-after")))
