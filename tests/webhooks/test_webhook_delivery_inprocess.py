"""Callbacks of an in-process gateway delivered to real HTTP receivers on loopback.

Every receiver here is a small HTTP/1.1 server on 127.0.0.1 (`asyncio.start_server`) that
answers scripted replies and records what arrives; the gateway's own `WebhookSender` sends to
it over real sockets, admitted by `webhook_allow=["127.0.0.0/8"]`. Schedules are tenths of
a second so that retries are quick.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from gengate.runtime import Gateway
from gengate.settings import Settings, load_settings
from loopback_http import LoopbackServer

ADMIN_KEY = "gga_test_admin_key"
ECHO: dict[str, Any] = {"mode": "echo", "prompt": "callback"}
#: Attempt 1 at once, then two retries 0.2 s apart: three attempts in all.
SCHEDULE = [0.0, 0.2, 0.2]
POLL_S = 0.02

Delivery = dict[str, Any]


# -- a real receiver -------------------------------------------------------------------------
@dataclass(frozen=True)
class Reply:
    """What a receiver answers: `delay_s` before the status line; with `drip_s`, the body
    goes out one byte every `drip_s` seconds."""

    status: int = 200
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b"ok"
    delay_s: float = 0.0
    drip_s: float | None = None


@dataclass(frozen=True)
class Arrival:
    at_ns: int
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def verify(self, secret: str) -> Any:
        return Webhook(secret).verify(self.body, self.headers)


@dataclass
class Receiver(LoopbackServer):
    """Answers `replies` in order, then `default`; records every request and counts connections."""

    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    arrivals: list[Arrival] = field(default_factory=list)
    connections: int = 0
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self, port: int = 0) -> Receiver:
        await self.listen(port)
        return self

    async def close(self) -> None:
        await self.shut()

    async def wait_for(self, count: int, timeout: float = 5.0) -> list[Arrival]:
        """The first `count` requests, once they have arrived."""
        async with asyncio.timeout(timeout):
            while len(self.arrivals) < count:
                self._arrived.clear()
                await self._arrived.wait()
        return self.arrivals[:count]

    def _connected(self) -> None:
        self.connections += 1

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False  # the client closed a kept-alive connection
        arrived = time.time_ns()
        request_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        self.arrivals.append(Arrival(arrived, request_line.split(" ")[1], headers, body))
        self._arrived.set()
        reply = self.replies.pop(0) if self.replies else self.default
        if reply.delay_s:
            await asyncio.sleep(reply.delay_s)
        head_lines = [f"HTTP/1.1 {reply.status} Scripted".encode(), b"content-length: %d" % len(reply.body)]
        head_lines += [name + b": " + value for name, value in reply.headers]
        writer.write(b"\r\n".join(head_lines) + b"\r\n\r\n")
        if reply.drip_s is None:
            writer.write(reply.body)
        else:
            for i in range(len(reply.body)):
                await writer.drain()
                await asyncio.sleep(reply.drip_s)
                writer.write(reply.body[i : i + 1])
        await writer.drain()
        return True


def reserve_port() -> int:
    """A loopback port nothing listens on (yet)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- a gateway and a client of it -------------------------------------------------------------
@dataclass
class Harness:
    gateway: Gateway
    http: httpx.AsyncClient
    key: str

    @staticmethod
    def auth(key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {key}"}

    async def new_key(self, name: str = "other") -> str:
        _record, secret = await self.gateway.keys.create(name)
        return secret

    async def submit(
        self,
        callback_url: str | None,
        task_input: dict[str, Any] | None = None,
        *,
        request_type: str = "callback",
        key: str | None = None,
    ) -> str:
        body: dict[str, Any] = {"request_type": request_type, "input": task_input or ECHO}
        if callback_url is not None:
            body["callback_url"] = callback_url
        response = await self.http.post(
            "/api/v1/generateTask/demo-echo", json=body, headers=self.auth(key or self.key)
        )
        assert response.status_code == 200, response.text
        task_id: str = response.json()["data"]["taskId"]
        return task_id

    async def status_body(self, task_id: str) -> dict[str, Any]:
        response = await self.http.get(
            "/api/v1/statusTask/demo-echo", params={"taskId": task_id}, headers=self.auth(self.key)
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def deliveries_response(self, task_id: str, key: str | None = None) -> httpx.Response:
        return await self.http.get(f"/api/v1/tasks/{task_id}/deliveries", headers=self.auth(key or self.key))

    async def deliveries(self, task_id: str) -> list[Delivery]:
        response = await self.deliveries_response(task_id)
        assert response.status_code == 200, response.text
        data = response.json()["data"]
        assert data["taskId"] == task_id
        found: list[Delivery] = data["deliveries"]
        return found

    async def wait_delivery(
        self, task_id: str, until: Callable[[Delivery], bool], timeout: float = 5.0
    ) -> Delivery:
        """Poll the task's one delivery until `until` holds."""
        deadline = time.monotonic() + timeout
        while True:
            found = await self.deliveries(task_id)
            assert len(found) <= 1, found
            if found and until(found[0]):
                return found[0]
            if time.monotonic() > deadline:
                pytest.fail(f"delivery of {task_id} still not as expected after {timeout} s: {found}")
            await asyncio.sleep(POLL_S)

    async def wait_ended(self, task_id: str, timeout: float = 5.0) -> Delivery:
        return await self.wait_delivery(task_id, lambda d: d["state"] != "pending", timeout)

    async def redeliver(self, task_id: str, key: str | None = None) -> httpx.Response:
        return await self.http.post(f"/api/v1/tasks/{task_id}/redeliver", headers=self.auth(key or self.key))

    async def webhook_secret(self) -> str:
        response = await self.http.get("/api/v1/account", headers=self.auth(self.key))
        assert response.status_code == 200, response.text
        secret: str = response.json()["data"]["webhook_secret"]
        return secret

    async def metrics(self) -> str:
        response = await self.http.get("/metrics")
        assert response.status_code == 200
        return response.text


StartGateway = Callable[..., Awaitable[Harness]]
StartReceiver = Callable[..., Awaitable[Receiver]]


@pytest.fixture
async def start_gateway(settings: Settings) -> AsyncIterator[StartGateway]:
    """`await start_gateway(webhook_timeout_s=...)`: a running gateway admitting loopback
    callbacks on `SCHEDULE`, a client of it and an API key; stopped after the test."""
    async with contextlib.AsyncExitStack() as stack:

        async def start(**overrides: Any) -> Harness:
            options: dict[str, Any] = {
                "webhook_allow": ["127.0.0.0/8"],
                "webhook_retry_schedule": SCHEDULE,
                "webhook_timeout_s": 2.0,
                **overrides,
            }
            gateway = Gateway(load_settings(data_dir=settings.data_dir, admin_key=ADMIN_KEY, **options))
            await stack.enter_async_context(gateway.running())
            transport = httpx.ASGITransport(app=gateway.asgi())
            client = httpx.AsyncClient(transport=transport, base_url="http://gateway.test")
            http = await stack.enter_async_context(client)
            _record, key = await gateway.keys.create("callbacks")
            return Harness(gateway, http, key)

        yield start
    # Should a sender task ever die with an exception again, it is logged as "never retrieved"
    # when collected. Collect it now: collected at a random later moment, say while pytest
    # parses source, the traceback's own ast.parse trips CPython 3.11's "AST constructor
    # recursion depth mismatch" and pytest ends with an INTERNALERROR hiding the failure.
    gc.collect()


@pytest.fixture
async def start_receiver() -> AsyncIterator[StartReceiver]:
    """`await start_receiver(Reply(500), default=Reply(200), port=...)`; closed after the test."""
    receivers: list[Receiver] = []

    async def start(*replies: Reply, default: Reply | None = None, port: int = 0) -> Receiver:
        receiver = Receiver(list(replies), default or Reply())
        receivers.append(receiver)
        return await receiver.start(port)

    yield start
    for receiver in receivers:
        await receiver.close()


def statuses(delivery: Delivery) -> list[int | None]:
    return [attempt["statusCode"] for attempt in delivery["attempts"]]


def metric(text: str, sample: str) -> float:
    """The value of one sample line of the Prometheus text, 0 when absent."""
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return 0.0


# -- delivered, signed, and the status body ---------------------------------------------------
@pytest.mark.parametrize(
    ("task_input", "state"),
    [(ECHO, "success"), ({"mode": "echo", "fail_code": "DEMO_BOOM"}, "failed")],
    ids=["success", "failed"],
)
async def test_callback_is_the_signed_status_response(
    start_gateway: StartGateway, start_receiver: StartReceiver, task_input: dict[str, Any], state: str
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url, task_input)
    delivery = await gate.wait_ended(task_id)
    [arrival] = receiver.arrivals

    assert delivery["state"] == "delivered"
    assert statuses(delivery) == [200]
    assert delivery["url"] == receiver.url
    assert delivery["completedAt"] is not None
    assert delivery["nextAttemptAt"] is None
    [attempt] = delivery["attempts"]
    assert attempt["attempt"] == 1
    assert attempt["error"] is None
    assert attempt["latencyMs"] is not None
    assert attempt["latencyMs"] >= 0

    # The body is exactly what statusTask answers for the task, and signed with the key's secret.
    status = await gate.status_body(task_id)
    assert status["data"]["state"] == state
    assert arrival.verify(await gate.webhook_secret()) == status
    assert arrival.json() == status
    if state == "failed":
        assert status["data"]["failCode"] == "DEMO_BOOM"
    assert arrival.path == "/hook"
    assert arrival.headers["content-type"] == "application/json"
    assert arrival.headers["webhook-id"] == delivery["id"]
    assert arrival.headers["webhook-signature"].startswith("v1,")
    assert abs(int(arrival.headers["webhook-timestamp"]) - time.time()) < 10
    assert arrival.headers["host"] == f"127.0.0.1:{receiver.port}"


async def test_async_task_with_callback_url_calls_back_too(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url, request_type="async")
    assert (await gate.wait_ended(task_id))["state"] == "delivered"
    [arrival] = receiver.arrivals
    assert arrival.json()["data"]["taskId"] == task_id


async def test_task_without_callback_owes_no_delivery(gateway: Gateway, http: httpx.AsyncClient) -> None:
    _record, key = await gateway.keys.create("plain")
    harness = Harness(gateway, http, key)
    task_id = await harness.submit(None, request_type="sync")
    assert await harness.deliveries(task_id) == []
    response = await harness.redeliver(task_id)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"


async def test_a_canceled_task_calls_back(start_gateway: StartGateway, start_receiver: StartReceiver) -> None:
    gate = await start_gateway(workers=0)  # it stays pending until canceled
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url)
    response = await gate.http.post(
        "/api/v1/cancelTask/demo-echo", params={"taskId": task_id}, headers=gate.auth(gate.key)
    )
    assert response.status_code == 200, response.text
    [arrival] = await receiver.wait_for(1)
    status = await gate.status_body(task_id)
    assert status["data"]["failCode"] == "CANCELED"
    assert arrival.verify(await gate.webhook_secret()) == status
    assert (await gate.wait_ended(task_id))["state"] == "delivered"


# -- retries ----------------------------------------------------------------------------------
async def test_500_500_200_is_three_attempts_of_one_message(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver(Reply(500, body=b"busy"), Reply(500))
    task_id = await gate.submit(receiver.url)
    delivery = await gate.wait_ended(task_id)

    assert delivery["state"] == "delivered"
    assert statuses(delivery) == [500, 500, 200]
    assert [a["attempt"] for a in delivery["attempts"]] == [1, 2, 3]
    assert delivery["attempts"][0]["error"].startswith("HTTP 500")
    assert "busy" in delivery["attempts"][0]["error"]
    assert delivery["attempts"][2]["error"] is None
    started = [a["startedAt"] for a in delivery["attempts"]]
    assert all(later - earlier >= 200 for earlier, later in itertools.pairwise(started))
    arrivals = receiver.arrivals
    assert len(arrivals) == 3
    assert {a.headers["webhook-id"] for a in arrivals} == {delivery["id"]}
    secret = await gate.webhook_secret()
    assert all(a.verify(secret) == arrivals[0].json() for a in arrivals)

    text = await gate.metrics()
    assert metric(text, 'gengate_webhook_attempts_total{outcome="retry"}') == 2
    assert metric(text, 'gengate_webhook_attempts_total{outcome="delivered"}') == 1
    assert metric(text, "gengate_webhook_latency_seconds_count") == 3
    assert metric(text, "gengate_webhook_delivery_delay_seconds_count") == 1
    assert metric(text, "gengate_webhook_delivery_delay_seconds_sum") >= 0.4


async def test_receiver_down_then_up(start_gateway: StartGateway, start_receiver: StartReceiver) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.3, 0.3, 0.3, 0.3])
    port = reserve_port()
    task_id = await gate.submit(f"http://127.0.0.1:{port}/hook")
    first = await gate.wait_delivery(task_id, lambda d: len(d["attempts"]) >= 1)
    assert first["state"] == "pending"
    assert first["attempts"][0]["statusCode"] is None
    assert first["attempts"][0]["latencyMs"] is None
    assert "connect" in first["attempts"][0]["error"].lower()
    assert first["nextAttemptAt"] is not None

    receiver = await start_receiver(port=port)
    delivery = await gate.wait_ended(task_id)
    assert delivery["state"] == "delivered"
    assert statuses(delivery)[-1] == 200
    assert all(status is None for status in statuses(delivery)[:-1])
    assert len(receiver.arrivals) == 1
    assert receiver.arrivals[0].headers["webhook-id"] == delivery["id"]


async def test_schedule_exhausted_ends_failed(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.1, 0.1])
    receiver = await start_receiver(default=Reply(500))
    task_id = await gate.submit(receiver.url)
    delivery = await gate.wait_ended(task_id)
    assert delivery["state"] == "failed"
    assert statuses(delivery) == [500, 500, 500]
    assert delivery["nextAttemptAt"] is None
    assert delivery["completedAt"] is not None
    await asyncio.sleep(0.4)
    assert len(receiver.arrivals) == 3
    assert metric(await gate.metrics(), 'gengate_webhook_attempts_total{outcome="failed"}') == 1


async def test_gone_410_stops_after_one_attempt(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.1, 0.1])
    receiver = await start_receiver(default=Reply(410, body=b"unsubscribed"))
    task_id = await gate.submit(receiver.url)
    delivery = await gate.wait_ended(task_id)
    assert delivery["state"] == "failed"
    assert statuses(delivery) == [410]
    assert "410" in delivery["attempts"][0]["error"]
    await asyncio.sleep(0.4)
    assert len(receiver.arrivals) == 1


async def test_retry_after_postpones_the_next_attempt(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.2, 0.2])
    receiver = await start_receiver(Reply(503, headers=((b"Retry-After", b"2"),)))
    task_id = await gate.submit(receiver.url)
    waiting = await gate.wait_delivery(task_id, lambda d: len(d["attempts"]) == 1)
    assert waiting["state"] == "pending"
    assert waiting["nextAttemptAt"] - waiting["attempts"][0]["startedAt"] >= 2000

    delivery = await gate.wait_ended(task_id, timeout=6)
    assert statuses(delivery) == [503, 200]
    first, second = receiver.arrivals
    assert second.at_ns - first.at_ns >= 2_000_000_000
    assert delivery["attempts"][1]["startedAt"] - delivery["attempts"][0]["startedAt"] >= 2000


async def test_timeout_is_a_failed_attempt_and_the_schedule_goes_on(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_timeout_s=0.3, webhook_retry_schedule=[0, 0.1, 0.1])
    receiver = await start_receiver(Reply(delay_s=1.0))
    task_id = await gate.submit(receiver.url)
    delivery = await gate.wait_ended(task_id)
    assert delivery["state"] == "delivered"
    assert statuses(delivery) == [None, 200]
    timed_out = delivery["attempts"][0]
    assert timed_out["latencyMs"] is None
    assert "0.3 s" in timed_out["error"]
    assert delivery["attempts"][1]["startedAt"] - timed_out["startedAt"] >= 300 + 100
    assert len({a.headers["webhook-id"] for a in receiver.arrivals}) == 1


async def test_slow_receiver_does_not_hold_up_another_callback(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_timeout_s=5.0)
    slow = await start_receiver(Reply(delay_s=1.5))
    fast = await start_receiver()
    slow_task = await gate.submit(slow.url)
    await slow.wait_for(1)  # its attempt is in flight for the next 1.5 s

    fast_task = await gate.submit(fast.url)
    [arrival] = await fast.wait_for(1, timeout=1.5)
    complete_time = (await gate.status_body(fast_task))["data"]["completeTime"]
    assert arrival.at_ns // 1_000_000 - complete_time < 1000
    assert (await gate.wait_ended(fast_task))["state"] == "delivered"
    in_flight = (await gate.deliveries(slow_task))[0]
    assert in_flight["state"] == "pending"
    assert in_flight["attempts"] == []
    assert (await gate.wait_ended(slow_task))["state"] == "delivered"


async def test_redirect_is_not_followed(start_gateway: StartGateway, start_receiver: StartReceiver) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.1])
    canary = await start_receiver()
    redirecting = await start_receiver(default=Reply(302, headers=((b"Location", canary.url.encode()),)))
    task_id = await gate.submit(redirecting.url)
    delivery = await gate.wait_ended(task_id)
    assert delivery["state"] == "failed"
    assert statuses(delivery) == [302, 302]
    assert all("redirect" in a["error"] for a in delivery["attempts"])
    assert len(redirecting.arrivals) == 2
    assert canary.connections == 0
    assert canary.arrivals == []


# -- redelivery, secrets, ownership -----------------------------------------------------------
async def test_redeliver_sends_the_same_message_with_a_new_signature(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url)
    delivered = await gate.wait_ended(task_id)
    [first] = receiver.arrivals
    # The timestamp has a resolution of one second: let it move on.
    while int(time.time()) <= int(first.headers["webhook-timestamp"]):
        await asyncio.sleep(0.05)

    response = await gate.redeliver(task_id)
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"taskId": task_id, "deliveryId": delivered["id"], "state": "pending"}
    [_, second] = await receiver.wait_for(2)
    again = await gate.wait_delivery(task_id, lambda d: d["state"] == "delivered" and len(d["attempts"]) == 2)

    assert again["id"] == delivered["id"]
    assert [a["attempt"] for a in again["attempts"]] == [1, 2]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == delivered["id"]
    assert int(second.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert second.headers["webhook-signature"] != first.headers["webhook-signature"]
    secret = await gate.webhook_secret()
    assert second.verify(secret) == first.verify(secret) == await gate.status_body(task_id)


async def test_redeliver_is_refused_while_a_delivery_is_pending(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 30])
    receiver = await start_receiver(Reply(500))
    task_id = await gate.submit(receiver.url)
    await gate.wait_delivery(task_id, lambda d: len(d["attempts"]) == 1)
    response = await gate.redeliver(task_id)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "bad_request"
    assert len(receiver.arrivals) == 1


async def test_a_redelivery_runs_a_fresh_schedule(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway(webhook_retry_schedule=[0, 0.1])
    receiver = await start_receiver(Reply(500), Reply(500), Reply(500))
    task_id = await gate.submit(receiver.url)
    assert statuses(await gate.wait_ended(task_id)) == [500, 500]  # two attempts: exhausted
    assert (await gate.redeliver(task_id)).status_code == 200
    delivery = await gate.wait_delivery(
        task_id, lambda d: len(d["attempts"]) == 4 and d["state"] != "pending"
    )
    assert statuses(delivery) == [500, 500, 500, 200]
    assert delivery["state"] == "delivered"


async def test_rotated_secret_signs_later_callbacks(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver()
    old_secret = await gate.webhook_secret()
    assert old_secret.startswith("whsec_")
    before = await gate.submit(receiver.url)
    await gate.wait_ended(before)

    response = await gate.http.post("/api/v1/account/rotateWebhookSecret", headers=gate.auth(gate.key))
    assert response.status_code == 200, response.text
    new_secret = response.json()["data"]["webhook_secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != old_secret
    assert await gate.webhook_secret() == new_secret

    after = await gate.submit(receiver.url)
    await gate.wait_ended(after)
    old_message, new_message = receiver.arrivals
    assert old_message.verify(old_secret)["data"]["taskId"] == before
    assert new_message.verify(new_secret)["data"]["taskId"] == after
    with pytest.raises(WebhookVerificationError):
        new_message.verify(old_secret)
    with pytest.raises(WebhookVerificationError):
        old_message.verify(new_secret)


async def test_secrets_differ_between_keys(start_gateway: StartGateway) -> None:
    gate = await start_gateway()
    other = Harness(gate.gateway, gate.http, await gate.new_key())
    assert await other.webhook_secret() != await gate.webhook_secret()


async def test_another_keys_deliveries_are_not_found(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    gate = await start_gateway()
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url)
    await gate.wait_ended(task_id)
    other = await gate.new_key()
    for response in (await gate.deliveries_response(task_id, other), await gate.redeliver(task_id, other)):
        assert response.status_code == 404, response.text
        body = response.json()
        assert body["error"]["code"] == "task_not_found"
        assert body["data"] is None
    assert len(receiver.arrivals) == 1


# -- regressions: server bugs these tests found (fixed in 05ed1a8) -------------------------------
async def test_first_attempt_waits_the_first_delay(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    """schedule[0] is the delay of attempt 1 (it used to be ignored: due at once)."""
    gate = await start_gateway(webhook_retry_schedule=[1.0, 0.1])
    receiver = await start_receiver()
    task_id = await gate.submit(receiver.url)
    [arrival] = await receiver.wait_for(1, timeout=3)
    complete_time = (await gate.status_body(task_id))["data"]["completeTime"]
    assert arrival.at_ns // 1_000_000 - complete_time >= 1000
    delivery = await gate.wait_ended(task_id)
    assert delivery["attempts"][0]["startedAt"] - delivery["createdAt"] >= 1000


async def test_odd_retry_after_is_still_a_recorded_attempt(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    """`Retry-After: <byte 0xB2>` reads as "²", which isdigit() admits and float() refuses: it
    used to raise in the sender, leaving the attempt unrecorded and the delivery leased."""
    gate = await start_gateway()
    receiver = await start_receiver(Reply(503, headers=((b"Retry-After", b"\xb2"),)))
    task_id = await gate.submit(receiver.url)
    delivery = await gate.wait_ended(task_id, timeout=2)
    assert statuses(delivery) == [503, 200]


async def test_timeout_bounds_the_whole_attempt(
    start_gateway: StartGateway, start_receiver: StartReceiver
) -> None:
    """A receiver trickling its body a byte at a time used to hold the attempt for as long as it
    liked: httpx's timeout bounds each read, not the attempt."""
    gate = await start_gateway(webhook_timeout_s=0.5)
    receiver = await start_receiver(Reply(body=b"x" * 12, drip_s=0.25))  # 3 s for the body
    task_id = await gate.submit(receiver.url)
    await receiver.wait_for(1)
    delivery = await gate.wait_delivery(task_id, lambda d: len(d["attempts"]) >= 1, timeout=1.5)
    assert delivery["attempts"][0]["statusCode"] is None
    assert "0.5 s" in delivery["attempts"][0]["error"]


async def test_sender_does_not_spin_while_an_attempt_is_in_flight(
    start_gateway: StartGateway, start_receiver: StartReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A leased (in-flight) delivery used to count as due, so the sender loop ran claim
    transactions back to back until the attempt ended (thousands a second)."""
    gate = await start_gateway()
    receiver = await start_receiver(Reply(delay_s=1.0))
    store = gate.gateway.store
    claims: list[float] = []
    claim = store.claim_deliveries

    async def counting_claim(owner: str, limit: int, lease_ms: int) -> Sequence[Any]:
        claims.append(time.monotonic())
        return await claim(owner, limit, lease_ms)

    monkeypatch.setattr(store, "claim_deliveries", counting_claim)
    task_id = await gate.submit(receiver.url)
    await receiver.wait_for(1)
    claims.clear()
    await asyncio.sleep(0.8)  # the attempt is in flight all along
    assert (await gate.deliveries(task_id))[0]["attempts"] == []
    assert len(claims) <= 10, f"{len(claims)} claims in 0.8 s with nothing due"


async def test_the_delivery_lease_outlasts_the_longest_attempt(start_gateway: StartGateway) -> None:
    gate = await start_gateway(webhook_timeout_s=120)
    assert gate.gateway.webhooks.lease_ms > 120 * 1000
