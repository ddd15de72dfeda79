"""Input limits on every route: what a client can send that is too big, too deep, not JSON or
out of range is a 400 or 413 in the route's envelope, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.types import Message, Receive, Scope, Send

from gengate.api.guard import RequestGuard
from gengate.runtime import Gateway
from gengate.settings import Settings

LIMIT = 4096
ADMIN_KEY = "gga_test_admin_key"


@pytest.fixture
async def small(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A gateway without workers that takes bodies of at most 4 KiB."""
    gateway = Gateway(settings.model_copy(update={"workers": 0, "max_body_bytes": LIMIT}))
    async with gateway.running():
        _key, secret = await gateway.keys.create("limits")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, secret


def wrap(route: str, model_input: bytes) -> tuple[str, bytes]:
    """The route's path and a body carrying `model_input` (raw JSON text) as the input."""
    if route == "apixo":
        return "/api/v1/generateTask/demo-image", b'{"input": ' + model_input + b"}"
    if route == "kie":
        return "/api/v1/jobs/createTask", b'{"model": "demo-image", "input": ' + model_input + b"}"
    return "/api/v1/run/demo-image", model_input


BAD_INPUTS: dict[str, bytes] = {
    "NaN": b'{"prompt": "x", "seed": NaN}',
    "Infinity": b'{"prompt": "x", "seed": Infinity}',
    "-Infinity": b'{"prompt": "x", "seed": -Infinity}',
    "overflowing float": b'{"prompt": "x", "seed": 1e999}',
    "integer past 64 bits": b'{"prompt": "x", "seed": 123456789012345678901234567890}',
    "integer past the field": b'{"prompt": "x", "seed": 18446744073709551615}',
    "negative huge": b'{"prompt": "x", "seed": -9223372036854775809}',
    "invalid UTF-8": b'{"prompt": "\xff\xfe"}',
    "lone surrogate": b'{"prompt": "\\ud800"}',
    "too many outputs": b'{"prompt": "x", "n": 5}',
    "outputs as a huge float": b'{"prompt": "x", "n": 1e30}',
    "image too wide": b'{"prompt": "x", "width": 4096}',
    "image too small": b'{"prompt": "x", "height": 0}',
    "prompt too long": b'{"prompt": "' + b"p" * 4001 + b'"}',
    "prompt of the wrong type": b'{"prompt": ["x"]}',
    "deep nesting": b'{"prompt": "x", "extra": ' + b"[" * 40 + b"]" * 40 + b"}",
    "not JSON": b"{prompt: x}",
    "byte order mark": b'\xef\xbb\xbf{"prompt": "x"}',
}


@pytest.mark.parametrize("route", ["apixo", "kie", "xhuo"])
@pytest.mark.parametrize("case", list(BAD_INPUTS))
async def test_bad_input_is_a_bad_request(
    small: tuple[httpx.AsyncClient, str], route: str, case: str
) -> None:
    http, key = small
    path, body = wrap(route, BAD_INPUTS[case])
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    response = await http.post(path, content=body, headers=headers)
    assert response.status_code == 400, (case, response.text)
    check_envelope(response, route, "bad_request")


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", b"[]", b'"text"', b"null", b"1", b'{"a": 1', b"\x00", b"{" * 2000],
)
async def test_bodies_that_are_no_object(small: tuple[httpx.AsyncClient, str], body: bytes) -> None:
    http, key = small
    response = await http.post(
        "/api/v1/generateTask/demo-echo", content=body, headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 400, response.text
    check_envelope(response, "apixo", "bad_request")


@pytest.mark.parametrize("route", ["apixo", "kie", "xhuo"])
async def test_a_body_over_the_limit_is_payload_too_large(
    small: tuple[httpx.AsyncClient, str], route: str
) -> None:
    http, key = small
    path, body = wrap(route, b'{"prompt": "' + b"p" * LIMIT + b'"}')
    response = await http.post(path, content=body, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 413
    check_envelope(response, route, "payload_too_large")


async def test_every_route_refuses_a_large_declared_body(small: tuple[httpx.AsyncClient, str]) -> None:
    """Routes that read no body at all (cancel, rotate, the admin list) still refuse one."""
    http, key = small
    for method, path in (
        ("POST", "/api/v1/cancelTask/demo-echo?taskId=task_x"),
        ("POST", "/api/v1/account/rotateWebhookSecret"),
        ("POST", "/admin/v1/keys"),
        ("PATCH", "/admin/v1/keys/key_x"),
    ):
        response = await http.request(
            method, path, content=b"x" * (LIMIT + 1), headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 413, path
        check_envelope(response, "apixo", "payload_too_large")


async def test_admin_bodies_are_checked_alike(small: tuple[httpx.AsyncClient, str]) -> None:
    http, _key = small
    admin = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    for body in (
        b'{"name": "k", "credits": NaN}',
        b'{"name": "k", "credits": 1e400}',
        b'{"name": "k", "credits": 99999999999999999999}',
        b'{"name": "k", "expires_at": -1}',
        b'{"name": "\xff"}',
        b'{"name": ""}',
    ):
        response = await http.post("/admin/v1/keys", content=body, headers=admin)
        assert response.status_code == 400, (body, response.text)
        check_envelope(response, "apixo", "bad_request")


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/statusTask/demo-echo?taskId=a&taskId=b",  # the hot path
        "/api/v1/jobs/recordInfo?taskId=a&taskId=b",  # the KIE hot path
        "/api/v1/statusTask/demo-echo?taskId=a&task%49d=b",  # the same name, percent-encoded
        "/api/v1/tasks?limit=1&limit=2",
        "/api/v1/account/usage?cursor=1&cursor=2",
    ],
)
async def test_a_query_parameter_given_twice_is_a_bad_request(
    small: tuple[httpx.AsyncClient, str], path: str
) -> None:
    http, key = small
    response = await http.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 400, response.text
    assert "more than once" in response.json()["error"]["message"]
    check_envelope(response, "kie" if "/jobs/" in path else "apixo", "bad_request")


@pytest.mark.parametrize("path", ["/api/v1/statusTask/demo-echo?taskId=%FF%FE", "/api/v1/tasks?model=%FF"])
async def test_invalid_utf8_in_the_query_is_no_error(small: tuple[httpx.AsyncClient, str], path: str) -> None:
    http, key = small
    response = await http.get(path, headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 404), response.text


# -- the guard itself, in raw ASGI -------------------------------------------------------------
async def _answer(scope: Scope, receive: Receive, send: Send) -> None:
    """A route that reads the whole body, then answers 200."""
    while True:
        message = await receive()
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def _scope(headers: list[tuple[bytes, bytes]], query: bytes = b"") -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/run/x",
        "headers": headers,
        "query_string": query,
    }


async def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    read: list[Message] = []

    async def receive() -> Message:
        read.append({"type": "http.request", "body": b"x" * 100, "more_body": True})
        return read[-1]

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    guard = RequestGuard(_answer, 1000)
    await guard(_scope([(b"content-length", b"1001")]), receive, send)
    assert read == []  # not a byte of the body
    assert sent[0]["status"] == 413
    assert (b"connection", b"close") in sent[0]["headers"]
    sent.clear()
    await guard(_scope([(b"content-length", b"12abc")]), receive, send)
    assert sent[0]["status"] == 400


async def test_a_chunked_body_is_cut_as_soon_as_it_passes_the_limit() -> None:
    pulled = 0

    async def endless() -> Message:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": b"x" * 100, "more_body": True}

    async def send(_message: Message) -> None:
        raise AssertionError("the route never answers: the guard's error is raised inside it")

    guard = RequestGuard(_answer, 1000)
    with pytest.raises(Exception, match="larger than 1000 bytes") as raised:
        await guard(_scope([(b"transfer-encoding", b"chunked")]), endless, send)
    assert type(raised.value).__name__ == "PayloadTooLarge"
    assert pulled == 11  # 1,100 bytes: the first chunk past the limit, and no more


def check_envelope(response: httpx.Response, route: str, code: str) -> None:
    body = response.json()
    assert body["error"]["code"] == code
    assert body["trace_id"] == response.headers["x-trace-id"]
    if route == "xhuo":
        assert set(body) == {"error", "trace_id"}
        return
    assert body["code"] == response.status_code
    assert body["data"] is None
    assert ("msg" if route == "kie" else "message") in body
