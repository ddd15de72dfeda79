"""A callback receiver cannot make the gateway read, or inflate, a huge answer.

The receiver is a real loopback server (`hostile_http`) answering a gzip bomb (1 MB on the wire,
1 GiB inflated) or 1.5 GiB of plain chunked body; the gateway runs in this process, so Python's
own allocation tracer sees every byte it keeps. Before the fix the sender read the whole answer
(and httpx inflated it): a gigabyte for every attempt.
"""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.settings import Settings, load_settings
from gengate.webhooks.transport import ERROR_EXCERPT
from hostile_http import FILL, MIB, HostileServer, Reply, bomb_reply, endless_reply, gzip_bomb, traced_peak

ADMIN_KEY = "gga_test_admin_key"
ECHO: dict[str, Any] = {"mode": "echo", "prompt": "bounded callback"}
#: Far more than the sender may keep: a few KB of the answer, the connection, the gateway.
PEAK_LIMIT = 64 * MIB


@dataclass
class Gate:
    gateway: Gateway
    http: httpx.AsyncClient
    key: str

    async def submit(self, callback_url: str) -> str:
        response = await self.http.post(
            "/api/v1/generateTask/demo-echo",
            json={"request_type": "callback", "callback_url": callback_url, "input": ECHO},
            headers={"Authorization": f"Bearer {self.key}"},
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["taskId"]
        return task_id

    async def first_attempt(self, task_id: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            response = await self.http.get(
                f"/api/v1/tasks/{task_id}/deliveries", headers={"Authorization": f"Bearer {self.key}"}
            )
            assert response.status_code == 200, response.text
            found = response.json()["data"]["deliveries"]
            if found and found[0]["attempts"]:
                attempt: dict[str, Any] = found[0]["attempts"][0]
                return attempt
            assert time.monotonic() < deadline, f"no attempt recorded within {timeout} s: {found}"
            await asyncio.sleep(0.02)


@pytest.fixture
async def gate(settings: Settings) -> AsyncIterator[Gate]:
    """A running gateway admitting loopback callbacks, one attempt now and the next in a minute."""
    options: dict[str, Any] = {
        "webhook_allow": ["127.0.0.0/8"],
        "webhook_retry_schedule": [0.0, 60.0],
        "webhook_timeout_s": 20.0,
    }
    gateway = Gateway(load_settings(data_dir=settings.data_dir, admin_key=ADMIN_KEY, **options))
    async with gateway.running():
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            _record, key = await gateway.keys.create("bounded")
            yield Gate(gateway, http, key)


def test_the_bomb_is_a_valid_gzip() -> None:
    """The shortcut that builds the bomb makes a true gzip member: CRC, length and all."""
    assert gzip.decompress(gzip_bomb(4 * MIB)) == FILL * (4 * MIB)
    assert len(gzip_bomb()) < 2 * MIB


REPLIES: dict[str, Callable[[], Reply]] = {
    "gzip-bomb-200": lambda: bomb_reply(200),
    "gzip-bomb-500": lambda: bomb_reply(500),
    "plain-1.5GiB-200": lambda: endless_reply(200),
    "plain-1.5GiB-500": lambda: endless_reply(500),
}


@pytest.mark.parametrize("name", list(REPLIES))
async def test_a_huge_answer_is_neither_read_nor_inflated(gate: Gate, name: str) -> None:
    reply = REPLIES[name]()
    async with HostileServer(lambda method, path: reply) as receiver:
        with traced_peak() as peak:
            task_id = await gate.submit(receiver.base_url + "/hook")
            attempt = await gate.first_attempt(task_id)

    assert attempt["statusCode"] == reply.status, attempt
    if reply.status == 200:
        assert attempt["error"] is None
    else:  # the excerpt of the error body is kept, as before, and only that much of it is read
        assert attempt["error"] == f"HTTP 500: {FILL.decode() * ERROR_EXCERPT}"
    assert peak.bytes < PEAK_LIMIT, f"the gateway held {peak.bytes / MIB:.0f} MiB at once"
    if reply.chunked:
        assert receiver.sent[0] < reply.size // 2, "the gateway read the whole plain body"


async def test_an_excerpt_of_a_short_gzip_error_is_still_readable(gate: Gate) -> None:
    """Inflating only what it keeps, the sender still reads a small gzip error body."""
    reply = Reply(500, (("Content-Encoding", "gzip"),), gzip.compress(b"overloaded, try later"))
    async with HostileServer(lambda method, path: reply) as receiver:
        attempt = await gate.first_attempt(await gate.submit(receiver.base_url + "/hook"))
    assert attempt["error"] == "HTTP 500: overloaded, try later"


async def test_an_error_body_cut_inside_a_character_keeps_the_whole_ones(gate: Gate) -> None:
    """An excerpt ends on a character boundary rather than being dropped as undecodable."""
    body = "é".encode() * ERROR_EXCERPT  # two bytes each: the excerpt's last byte cuts one
    reply = Reply(503, (("Content-Type", "text/plain; charset=utf-8"),), b"a" + body)
    async with HostileServer(lambda method, path: reply) as receiver:
        attempt = await gate.first_attempt(await gate.submit(receiver.base_url + "/hook"))
    assert attempt["error"] == "HTTP 503: a" + "é" * ((ERROR_EXCERPT - 1) // 2)
