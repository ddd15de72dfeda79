"""Submits taken by the hot lane below ASGI (:mod:`gengate.server.hot_lane`), through a real
uvicorn in raw HTTP: a `POST` whose whole body came in the read that brought its head is
answered by the lane, as the ASGI path answers it (taken with a chunked body, which the lane
refuses); a body split over reads, or pipelined requests, still get their right answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from gengate.runtime import Gateway
from gengate.server.run import server_config
from gengate.settings import Settings
from raw_http import connect, response, responses, running

ADMIN = "Authorization: Bearer gga_test_admin_key"
SUBMIT = "/api/v1/generateTask/demo-echo"
KIE = "/api/v1/jobs/createTask"
LIMIT = 4096


class Counted:
    """The app's lane, counting the `POST`s it answered."""

    def __init__(self, lane: Any) -> None:
        self.lane, self.posts = lane, 0
        self.route_for = lane.route_for
        self.answer = lane.answer

    async def answer_post(self, route: Any, scope: Any, receive: Any) -> Any:
        self.posts += 1
        return await self.lane.answer_post(route, scope, receive)


@pytest.fixture
def served(settings: Settings) -> Iterator[tuple[int, Counted, str]]:
    settings = settings.model_copy(update={"workers": 0, "max_body_bytes": LIMIT})
    app = Gateway(settings).asgi()
    with running(server_config(app, settings)) as (port, server):
        config: Any = server.config
        counted = Counted(config.hot_lane)  # each connection takes it from the config
        config.hot_lane = counted
        created = orjson.loads(whole(port, post("/admin/v1/keys", {"name": "lane"}, ADMIN))[2])
        yield port, counted, f"Authorization: Bearer {created['data']['key']}"


def post(path: str, body: Any, *headers: str, raw: bytes | None = None) -> bytes:
    data = orjson.dumps(body) if raw is None else raw
    head = [f"POST {path} HTTP/1.1", "Host: t", *headers, f"Content-Length: {len(data)}"]
    return "\r\n".join([*head, "", ""]).encode() + data


def chunked(path: str, body: Any, *headers: str, raw: bytes | None = None) -> bytes:
    data = orjson.dumps(body) if raw is None else raw
    head = [f"POST {path} HTTP/1.1", "Host: t", *headers, "Transfer-Encoding: chunked"]
    return "\r\n".join([*head, "", ""]).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)


def whole(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(request)
        answer: tuple[int, dict[str, str], bytes] = response(sock)
        return answer


def comparable(answer: tuple[int, dict[str, str], bytes]) -> tuple[int, dict[str, str], Any]:
    status, headers, raw = answer
    headers = dict(headers)
    trace_id = headers.pop("x-trace-id")
    assert headers.pop("date")
    body = orjson.loads(raw)
    if "trace_id" in body:
        assert body.pop("trace_id") == trace_id
    if isinstance(body.get("data"), dict) and "taskId" in body["data"]:
        body["data"]["taskId"] = "task"
    for name in ("x-ratelimit-reset", "retry-after"):
        headers.pop(name, None)
    return status, headers, body


def same_answer(
    port: int, lane: Counted, path: str, body: Any, *headers: str, raw: bytes | None = None
) -> Any:
    """The lane's answer to a whole `POST`, checked against the ASGI path's (a chunked body)."""
    before = lane.posts
    hot = whole(port, post(path, body, *headers, raw=raw))
    assert lane.posts == before + 1, path
    asgi = whole(port, chunked(path, body, *headers, raw=raw))
    assert lane.posts == before + 1, path
    fast, slow = comparable(hot), comparable(asgi)
    assert fast[0] == slow[0]
    assert fast[2] == slow[2]
    slow[1].pop("content-length")  # (the envelope's taskId: the same length; and the rest)
    fast[1].pop("content-length")
    assert fast[1] == slow[1]
    return fast


def test_a_whole_post_is_answered_by_the_lane_as_by_asgi(served: tuple[int, Counted, str]) -> None:
    port, lane, auth = served
    ok = {"input": {"mode": "echo", "prompt": "hi"}}
    assert same_answer(port, lane, SUBMIT, ok, auth)[0] == 200
    assert same_answer(port, lane, KIE, {"model": "demo-echo", **ok}, auth)[2]["msg"] == "success"
    assert same_answer(port, lane, SUBMIT, ok)[0] == 401
    assert same_answer(port, lane, SUBMIT, None, auth, raw=b'{"input": ')[0] == 400
    assert same_answer(port, lane, SUBMIT, [1], auth)[0] == 400
    assert same_answer(port, lane, "/api/v1/generateTask/nope", ok, auth)[0] == 404
    assert same_answer(port, lane, SUBMIT + "?a=1&a=2", ok, auth)[0] == 400
    assert same_answer(port, lane, SUBMIT, ok, auth, "Idempotency-Key: k1")[0] == 200


def test_a_body_over_the_limit_is_refused_and_the_connection_closed(served: tuple[int, Counted, str]) -> None:
    port, lane, auth = served
    big = {"input": {"mode": "echo", "prompt": "x" * LIMIT}}
    with connect(port) as sock:
        sock.sendall(post(SUBMIT, big, auth))
        status, headers, body = response(sock)
        assert (status, orjson.loads(body)["error"]["code"]) == (413, "payload_too_large")
        assert headers["connection"] == "close"
        try:  # closed: a next request on it gets no answer (kept open, it would get a 200)
            sock.sendall(post(SUBMIT, {"input": {"mode": "echo", "prompt": "more"}}, auth))
            after = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            after = b""
        assert after == b""
    assert lane.posts == 1


def test_a_body_split_over_reads_goes_through_asgi(served: tuple[int, Counted, str]) -> None:
    port, lane, auth = served
    request = post(SUBMIT, {"input": {"mode": "echo", "prompt": "split"}}, auth)
    with connect(port) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request[:-10])
        time.sleep(0.3)  # the server reads the head and part of the body on their own
        sock.sendall(request[-10:])
        status, _headers, body = response(sock)
        assert (status, orjson.loads(body)["code"]) == (200, 200)
        # the connection goes on: the next whole one takes the lane
        sock.sendall(post(SUBMIT, {"input": {"mode": "echo", "prompt": "next"}}, auth))
        assert response(sock)[0] == 200
    assert lane.posts == 1


def test_pipelined_posts_are_answered_in_order(served: tuple[int, Counted, str]) -> None:
    port, lane, auth = served
    prompts = ["one", "two", "three"]
    requests = [
        post(SUBMIT, {"input": {"mode": "echo", "prompt": p}}, auth, "X-Trace-Id: trace-" + p * 3)
        for p in prompts
    ]
    requests.insert(1, post(SUBMIT, None, auth, raw=b"[]"))
    with connect(port) as sock:
        sock.sendall(b"".join(requests))
        answers = responses(sock, 4)
    assert [a[0] for a in answers] == [200, 400, 200, 200]
    assert [a[1]["x-trace-id"] for a in answers if a[0] == 200] == ["trace-" + p * 3 for p in prompts]
    assert lane.posts >= 1


def test_a_post_whose_head_ends_a_body_read_goes_through_asgi_when_split(
    served: tuple[int, Counted, str],
) -> None:
    """The second head arrives in a read that ends the first request's body (answered, a 401,
    before it was read): its own body, split, still goes to uvicorn."""
    port, lane, auth = served
    first = post(SUBMIT, {"input": {"mode": "echo", "prompt": "no key"}})
    second = post(SUBMIT, {"input": {"mode": "echo", "prompt": "second"}}, auth)
    with connect(port) as sock:
        sock.sendall(first[:-5])
        assert response(sock)[0] == 401  # answered before its body was all read
        sock.sendall(first[-5:] + second[:-5])
        time.sleep(0.3)  # the server reads those on their own
        sock.sendall(second[-5:])
        status, _headers, body = response(sock)
    assert (status, orjson.loads(body)["code"]) == (200, 200)
    assert lane.posts == 0
