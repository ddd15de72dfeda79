"""Submits answered on the hot path answer exactly as the framework route does.

Each request (or sequence of requests, with fresh keys for each side) is sent in raw ASGI once
to the hot path in front of the framework, and once to the framework behind it (the layers
the hot path skips: trace, guard, Starlette), with the same settings and store; status,
headers and body must be the same, apart from task ids, times and the trace id minted.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from gengate.api.app import build_app
from gengate.api.guard import RequestGuard
from gengate.api.hotpath import HotPath, HotRoute
from gengate.runtime import Gateway
from gengate.settings import ModelConfig, Settings

APIXO = "/api/v1/generateTask/demo-echo"
KIE = "/api/v1/jobs/createTask"
REPLICATE = "/v1/predictions"
LIMIT = 2048
TRACE = b"equivalence-trace-0001"
ECHO = {"mode": "echo", "prompt": "hi"}
#: A loopback receiver the settings allow (nothing listens: the gateway has no workers).
ALLOWED_HOOK = "http://127.0.0.1:9/hook"
#: The cloud metadata address: refused whatever the settings.
REFUSED_HOOK = "http://169.254.169.254/latest"

Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@dataclass(frozen=True)
class Call:
    """One request: its body as the ASGI messages that carry it (`chunks`; `gone` ends them with
    a disconnect), the headers, and which key signs it (`key`: a name in the case's keys,
    None: no `Authorization`, a string starting with `Bearer`: that header as is)."""

    path: str
    body: Any = None
    raw: bytes | None = None
    chunks: Sequence[bytes] | None = None
    gone: bool = False
    headers: Sequence[tuple[bytes, bytes]] = ()
    query: bytes = b""
    key: str | None = "main"
    content_length: bool = True
    #: How the key is sent: `Bearer <key>`, or Replicate's `Token <key>`.
    scheme: str = "Bearer"

    def body_bytes(self) -> bytes:
        if self.raw is not None:
            return self.raw
        if self.chunks is not None:
            return b"".join(self.chunks)
        return orjson.dumps(self.body)


@dataclass(frozen=True)
class Case:
    name: str
    calls: Sequence[Call]
    #: Keyword arguments of each key the calls name (a fresh key per side).
    keys: dict[str, dict[str, Any]] = field(default_factory=lambda: {"main": {}})
    #: The framework side gets a gateway of its own (the case fills a model's queue).
    own_gateway: bool = False


def apixo(body: Any = None, **kw: Any) -> Call:
    return Call(APIXO, body if body is not None else {"input": ECHO}, **kw)


def kie(body: Any = None, **kw: Any) -> Call:
    return Call(KIE, body if body is not None else {"model": "demo-echo", "input": ECHO}, **kw)


def replicate(body: Any = None, **kw: Any) -> Call:
    return Call(
        REPLICATE, body if body is not None else {"version": "gengate/demo-echo", "input": ECHO}, **kw
    )


def callback(url: str) -> dict[str, Any]:
    return {"request_type": "callback", "callback_url": url, "input": ECHO}


def idempotent(call: Callable[..., Call], other: Any) -> list[Call]:
    header = [(b"idempotency-key", b"idem-1")]
    return [call(headers=header), call(headers=header), call(other, headers=header)]


LIMITED = {"main": {"rate_limit": "2/minute"}}
LENGTH = [(b"content-length", b"40")]
BIG = {"input": {"mode": "echo", "prompt": "x" * (LIMIT + 10)}}
JSON_TYPES = [b"application/json", b"application/json; charset=utf-8", b"text/plain", b"multipart/form-data"]

CASES = [
    Case("apixo async", [apixo()]),
    Case("apixo explicit async", [apixo({"request_type": "async", "input": ECHO})]),
    Case("apixo callback", [apixo(callback(ALLOWED_HOOK))]),
    Case("apixo callback ssrf", [apixo(callback(REFUSED_HOOK))]),
    Case("apixo callback missing", [apixo({"request_type": "callback", "input": ECHO})]),
    Case("apixo bad json", [apixo(raw=b'{"input": ')]),
    Case("apixo empty body", [apixo(raw=b"")]),
    Case("apixo blank body", [apixo(raw=b"  \n")]),
    Case("apixo array", [apixo(raw=b"[1, 2]")]),
    Case("apixo nan", [apixo(raw=b'{"input": NaN}')]),
    Case("apixo wide integer", [apixo(raw=b'{"input": {"mode": "echo", "prompt": "x", "seed": 1e400}}')]),
    Case("apixo deep", [apixo(raw=b'{"input": ' + b"[" * 40 + b"]" * 40 + b"}")]),
    Case("apixo bad utf-8", [apixo(raw=b'{"input": "\xff"}')]),
    Case("apixo missing input", [apixo({"request_type": "async"})]),
    Case("apixo request_type number", [apixo({"request_type": 5, "input": ECHO})]),
    Case("apixo request_type null", [apixo({"request_type": None, "input": ECHO})]),
    Case("apixo request_type unknown", [apixo({"request_type": "later", "input": ECHO})]),
    Case("apixo callback_url number", [apixo({"callback_url": 7, "input": ECHO})]),
    Case("apixo input string", [apixo({"input": "draw"})]),
    Case("apixo input wrong field", [apixo({"input": {"mode": "echo", "prompt": 3}})]),
    Case("apixo unknown model", [Call("/api/v1/generateTask/no-such-model", {"input": ECHO})]),
    Case(
        "apixo unknown model no key", [Call("/api/v1/generateTask/no-such-model", {"input": ECHO}, key=None)]
    ),
    Case("apixo oversize declared", [apixo(BIG)]),
    Case("apixo oversize declared no key", [apixo(BIG, key=None)]),
    Case("apixo oversize chunked", [apixo(chunks=[orjson.dumps(BIG)[:1500], orjson.dumps(BIG)[1500:]])]),
    Case("apixo oversize chunked no key", [apixo(chunks=[orjson.dumps(BIG)], key=None)]),
    Case("apixo chunked", [apixo(chunks=[b'{"inp', b'ut": {"mode": "echo", ', b'"prompt": "hi"}}'])]),
    Case("apixo chunked with empty parts", [apixo(chunks=[b"", orjson.dumps({"input": ECHO}), b""])]),
    Case("apixo bad content-length", [apixo(headers=[(b"content-length", b"12x")], content_length=False)]),
    Case("apixo gone mid-body", [apixo(chunks=[b'{"input": '], gone=True)]),
    Case(
        "apixo gone mid-body declared",
        [apixo(chunks=[b"{"], gone=True, content_length=False, headers=LENGTH)],
    ),
    Case("apixo no key", [apixo(key=None)]),
    Case("apixo bad key", [apixo(key="Bearer gga_not_a_key_at_all")]),
    Case("apixo not bearer", [apixo(key="Basic Zm9vOmJhcg==")]),
    Case("apixo repeated query", [apixo(query=b"a=1&a=2")]),
    Case("apixo repeated query no key", [apixo(query=b"a=1&a=2", key=None)]),
    Case("apixo other query", [apixo(query=b"a=1&b=2")]),
    *[Case(f"apixo content-type {t.decode()}", [apixo(headers=[(b"content-type", t)])]) for t in JSON_TYPES],
    Case("apixo rate limited", [apixo(), apixo(), apixo()], keys=LIMITED),
    Case("apixo rate limited error", [apixo(raw=b"["), apixo(raw=b"["), apixo(raw=b"[")], keys=LIMITED),
    Case("apixo used up", [apixo(), apixo()], keys={"main": {"credits": 1}}),
    Case("apixo model not allowed", [apixo()], keys={"main": {"models": ["demo-image"]}}),
    Case("apixo disabled key", [apixo()], keys={"main": {"disabled": True}}),
    Case("apixo queue full", [Call("/api/v1/generateTask/tiny", {"input": ECHO})] * 3, own_gateway=True),
    Case("apixo idempotency", idempotent(apixo, {"input": {"mode": "echo", "prompt": "other"}})),
    Case("apixo idempotency key too long", [apixo(headers=[(b"idempotency-key", b"k" * 300)])]),
    Case("kie create", [kie()]),
    Case("kie callback", [kie({"model": "demo-echo", "callBackUrl": ALLOWED_HOOK, "input": ECHO})]),
    Case("kie callback empty", [kie({"model": "demo-echo", "callBackUrl": "", "input": ECHO})]),
    Case("kie callback ssrf", [kie({"model": "demo-echo", "callBackUrl": REFUSED_HOOK, "input": ECHO})]),
    Case("kie callback number", [kie({"model": "demo-echo", "callBackUrl": 1, "input": ECHO})]),
    Case("kie bad json", [kie(raw=b"{,}")]),
    Case("kie array", [kie(raw=b"[]")]),
    Case("kie missing model", [kie({"input": ECHO})]),
    Case("kie model number", [kie({"model": 3, "input": ECHO})]),
    Case("kie unknown model", [kie({"model": "no-such-model", "input": ECHO})]),
    Case("kie missing input", [kie({"model": "demo-echo"})]),
    Case("kie bad input", [kie({"model": "demo-echo", "input": []})]),
    Case("kie oversize declared", [kie({"model": "demo-echo", **BIG})]),
    Case("kie oversize chunked", [kie(chunks=[orjson.dumps({"model": "demo-echo", **BIG})])]),
    Case(
        "kie chunked",
        [kie(chunks=[b'{"model": "demo-echo",', b' "input": {"mode": "echo", "prompt": "a"}}'])],
    ),
    Case("kie gone mid-body", [kie(chunks=[b"{"], gone=True)]),
    Case("kie no key", [kie(key=None)]),
    Case("kie bad key", [kie(key="Bearer nope")]),
    Case("kie repeated query", [kie(query=b"x=1&x=1")]),
    *[Case(f"kie content-type {t.decode()}", [kie(headers=[(b"content-type", t)])]) for t in JSON_TYPES],
    Case("kie rate limited", [kie(), kie(), kie()], keys=LIMITED),
    Case("kie used up", [kie(), kie()], keys={"main": {"credits": 1}}),
    Case("kie queue full", [kie({"model": "tiny", "input": ECHO})] * 3, own_gateway=True),
    Case(
        "kie idempotency", idempotent(kie, {"model": "demo-echo", "input": {"mode": "echo", "prompt": "b"}})
    ),
    Case("replicate create", [replicate()]),
    Case("replicate create by model", [replicate({"model": "demo-echo", "input": ECHO})]),
    Case("replicate token auth", [replicate(scheme="Token")]),
    Case("replicate wait", [replicate(headers=[(b"prefer", b"wait=1")])]),
    Case("replicate bad wait", [replicate(headers=[(b"prefer", b"wait=99")])]),
    Case("replicate no model", [replicate({"input": ECHO})]),
    Case("replicate unknown model", [replicate({"version": "someone/else", "input": ECHO})]),
    Case("replicate missing input", [replicate({"version": "gengate/demo-echo"})]),
    Case("replicate webhook", [replicate({"version": "demo-echo", "input": ECHO, "webhook": ALLOWED_HOOK})]),
    Case(
        "replicate webhook ssrf",
        [replicate({"version": "demo-echo", "input": ECHO, "webhook": REFUSED_HOOK})],
    ),
    Case(
        "replicate webhook filter",
        [replicate({"version": "demo-echo", "input": ECHO, "webhook_events_filter": 1})],
    ),
    Case("replicate bad json", [replicate(raw=b"{")]),
    Case("replicate oversize declared", [replicate({"version": "demo-echo", **BIG})]),
    Case("replicate oversize chunked", [replicate(chunks=[orjson.dumps({"version": "demo-echo", **BIG})])]),
    Case(
        "replicate chunked", [replicate(chunks=[b'{"version": "demo-echo",', b' "input": {"mode": "echo"}}'])]
    ),
    Case("replicate gone mid-body", [replicate(chunks=[b"{"], gone=True)]),
    Case("replicate no key", [replicate(key=None)]),
    Case("replicate repeated query", [replicate(query=b"x=1&x=1")]),
    Case(
        "replicate rate limited",
        [replicate(), replicate(), replicate()],
        keys=LIMITED,
    ),
    Case("replicate used up", [replicate(), replicate()], keys={"main": {"credits": 1}}),
    Case("replicate queue full", [replicate({"version": "tiny", "input": ECHO})] * 3, own_gateway=True),
    Case("replicate idempotency", idempotent(replicate, {"version": "demo-echo", "input": {"prompt": "c"}})),
]

#: What differs between two answers to the same request made twice: ids, times, signed links.
_VOLATILE = [
    (re.compile(rb"task_[0-9A-Za-z_-]+"), b"task_X"),
    (re.compile(rb'"(createTime|completeTime|costTime)":\d+'), rb'"\1":0'),
    (re.compile(rb'"resultJson":"(?:[^"\\]|\\.)*"'), b'"resultJson":"R"'),
    (re.compile(rb'"\d{4}-\d\d-\d\dT[^"]*"'), b'"TIME"'),
]
#: Headers whose values move with the clock (the rate-limit window's end).
_CLOCK_HEADERS = {b"x-ratelimit-reset", b"retry-after"}


def normalized(answer: Answer, sent_trace: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status, headers, body = answer
    trace = dict(headers)[b"x-trace-id"]
    for pattern, replacement in _VOLATILE:
        body = pattern.sub(replacement, body)
    if not sent_trace:
        body = body.replace(trace, b"TRACE")
    kept = [
        (
            name,
            b"N"
            if name in _CLOCK_HEADERS
            else b"TRACE"
            if name == b"x-trace-id" and not sent_trace
            else value,
        )
        for name, value in headers
    ]
    return status, sorted(kept), body


async def call(
    app: ASGIApp, request: Call, authorization: bytes | None, trace: bool = True
) -> tuple[Answer, Any]:
    """`request` sent to `app` in raw ASGI; its answer and the route that took it."""
    body = request.body_bytes()
    headers = [(b"host", b"gateway.test"), *request.headers]
    if request.content_length and request.chunks is None:
        headers.append((b"content-length", b"%d" % len(body)))
    if request.chunks is None:
        messages: list[Message] = [{"type": "http.request", "body": body, "more_body": False}]
    else:
        last = len(request.chunks) - 1
        messages = [
            {"type": "http.request", "body": chunk, "more_body": request.gone or i < last}
            for i, chunk in enumerate(request.chunks)
        ]
    if request.gone:
        messages.append({"type": "http.disconnect"})
    if authorization is not None:
        headers.append((b"authorization", authorization))
    if trace:
        headers.append((b"x-trace-id", TRACE))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": request.path,
        "raw_path": request.path.encode(),
        "root_path": "",
        "query_string": request.query,
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("gateway.test", 80),
        "state": {},
    }

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start, *rest = sent
    answer = (start["status"], list(start["headers"]), b"".join(m.get("body", b"") for m in rest))
    return answer, scope.get("route")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[Gateway]:
    """No workers (tasks stay pending), a small body limit, a loopback receiver allowed, and a
    `tiny` model whose queue holds two tasks."""
    update = {
        "workers": 0,
        "max_body_bytes": LIMIT,
        "webhook_allow": ["127.0.0.0/8"],
        "models": {"tiny": ModelConfig(provider="demo-echo", max_queue=2)},
    }
    gateway = Gateway(settings.model_copy(update=update))
    async with gateway.running():
        yield gateway


def layers(gateway: Gateway) -> tuple[HotPath, ASGIApp]:
    """The hot path, and the framework behind it (trace, guard, Starlette)."""
    front = build_app(gateway.api_context()).app  # type: ignore[attr-defined]
    assert isinstance(front, HotPath)
    return front, front.app


async def run_case(
    gateway: Gateway, app: ASGIApp, case: Case, trace: bool = True
) -> list[tuple[Answer, Any]]:
    keys = {name: (await gateway.keys.create(name, **kw))[1] for name, kw in case.keys.items()}
    answers = []
    for request in case.calls:
        if request.key is None:
            authorization = None
        elif request.key.startswith(("Bearer ", "Basic ")):
            authorization = request.key.encode()
        else:
            authorization = f"{request.scheme} {keys[request.key]}".encode()
        answers.append(await call(app, request, authorization, trace))
    return answers


async def assert_same(gateway: Gateway, case: Case, trace: bool = True) -> None:
    hot, framework = layers(gateway)
    fast = await run_case(gateway, hot, case, trace)
    if case.own_gateway:
        settings = gateway.settings
        second = Gateway(settings.model_copy(update={"data_dir": settings.data_dir.with_name("second")}))
        async with second.running():
            slow = await run_case(second, layers(second)[1], case, trace)
    else:
        slow = await run_case(gateway, framework, case, trace)
    for i, ((fast_answer, fast_route), (slow_answer, slow_route)) in enumerate(zip(fast, slow, strict=True)):
        assert isinstance(fast_route, HotRoute), f"{case.name}: not taken by the hot path"
        assert slow_route is None or isinstance(slow_route, Route)
        assert normalized(fast_answer, trace) == normalized(slow_answer, trace), f"{case.name}, call {i}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_hot_submit_answers_as_the_framework_route(gateway: Gateway, case: Case) -> None:
    await assert_same(gateway, case)


@pytest.mark.parametrize("case", [CASES[0], CASES[5], CASES[-1]], ids=lambda case: case.name)
async def test_the_trace_id_minted_is_in_header_and_body_alike(gateway: Gateway, case: Case) -> None:
    await assert_same(gateway, case, trace=False)
    hot, _framework = layers(gateway)
    (status, headers, body), _route = (await run_case(gateway, hot, case, trace=False))[-1]
    if status != 200:
        assert orjson.loads(body)["trace_id"] == dict(headers)[b"x-trace-id"].decode()


async def test_sync_submit_waits_for_the_task_alike(settings: Settings) -> None:
    """`request_type: sync`, with workers that finish the task within the wait."""
    gateway = Gateway(settings)
    async with gateway.running():
        case = Case("sync", [apixo({"request_type": "sync", "input": ECHO})])
        hot, framework = layers(gateway)
        fast = await run_case(gateway, hot, case)
        assert orjson.loads(fast[0][0][2])["data"]["state"] == "success"
        slow = await run_case(gateway, framework, case)
        assert normalized(fast[0][0], True) == normalized(slow[0][0], True)


async def test_a_hot_route_with_a_body_needs_the_guard() -> None:
    async def handler(_scope: Any, _receive: Any) -> None:
        return None

    async def fallback(_scope: Any, _receive: Any, _send: Any) -> None:
        return None

    with pytest.raises(ValueError, match="guard"):
        HotPath(fallback, [HotRoute("POST", "/x/", handler, body=True)])
    HotPath(fallback, [HotRoute("POST", "/x/", handler, body=True)], guard=RequestGuard(fallback, 10))
