"""The Webhooks page's "send a test event": one signed POST to a URL the owner types.

It goes through the same SSRF guard as callbacks (resolve once, refuse unsafe addresses unless
the operator allows them, connect to the checked address, follow no redirect) and is signed
with the key's webhook secret the Standard Webhooks way, so a receiver can test its checks.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import orjson
from standardwebhooks.webhooks import Webhook

from gengate.net.guard import AddressPolicy, UnsafeUrl, resolve_and_check

TIMEOUT_S = 10.0
EXCERPT = 300


@dataclass(frozen=True, slots=True)
class TestResult:
    """What came back: `status` (None when no answer), `latency_ms`, and `detail` (the error, or
    the start of the answer's body)."""

    __test__ = False  # not a pytest class, whatever its name

    url: str
    ok: bool
    status: int | None
    latency_ms: int | None
    detail: str


def test_body(key_id: str) -> bytes:
    return orjson.dumps({"type": "gengate.test", "keyId": key_id, "timestamp": int(time.time() * 1000)})


async def send_test_event(url: str, secret: str, key_id: str, policy: AddressPolicy) -> TestResult:
    try:
        target = await resolve_and_check(url, policy)
    except UnsafeUrl as exc:
        return TestResult(url, False, None, None, f"refused: {exc}")
    message_id = "msg_test_" + secrets.token_urlsafe(12)
    body = test_body(key_id)
    sent_at = datetime.now(UTC)
    headers = {
        "content-type": "application/json",
        "user-agent": "gengate-console-test",
        "host": target.host_header(),
        "webhook-id": message_id,
        "webhook-timestamp": str(int(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body.decode()),
    }
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_S, trust_env=False) as client:
            async with asyncio.timeout(TIMEOUT_S):
                response = await client.post(
                    target.ip_url(), content=body, headers=headers, extensions={"sni_hostname": target.host}
                )
    except (httpx.HTTPError, TimeoutError) as exc:
        return TestResult(url, False, None, None, f"{type(exc).__name__}: {exc}"[:EXCERPT])
    latency = int((time.monotonic() - started) * 1000)
    excerpt = response.content[:EXCERPT].decode("utf-8", "replace")
    return TestResult(url, 200 <= response.status_code < 300, response.status_code, latency, excerpt)
