"""The Webhooks page's "send a test event": one signed POST to a URL the owner types.

It is signed and read as callbacks are (`signed_headers`; only the start of the answer is read,
never a receiver's whole body or gzip bomb), and goes through the same SSRF guard (resolve once,
refuse unsafe addresses unless the operator allows them, connect to the checked address, follow
no redirect), so a receiver can test its checks.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from dataclasses import dataclass

import httpx
import orjson

from gengate.net.bounded import BodyError, aread_prefix
from gengate.net.guard import AddressPolicy, UnsafeUrl, resolve_and_check
from gengate.webhooks.signing import signed_headers
from gengate.webhooks.transport import ANSWER_SCAN

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
    headers = signed_headers(target, message_id, body, secret, user_agent="gengate-console-test")
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(follow_redirects=False, timeout=TIMEOUT_S, trust_env=False) as client:
            async with asyncio.timeout(TIMEOUT_S):
                request = client.build_request(
                    "POST",
                    target.ip_url(),
                    content=body,
                    headers=headers,
                    extensions={"sni_hostname": target.host},
                )
                response = await client.send(request, stream=True)
                try:  # the answer's start only, as for callbacks: never a receiver's whole body
                    excerpt = await aread_prefix(response, EXCERPT, scan=ANSWER_SCAN)
                finally:
                    await response.aclose()
    except (httpx.HTTPError, TimeoutError, BodyError) as exc:
        return TestResult(url, False, None, None, f"{type(exc).__name__}: {exc}"[:EXCERPT])
    latency = int((time.monotonic() - started) * 1000)
    return TestResult(url, 200 <= response.status_code < 300, response.status_code, latency, excerpt.text())
