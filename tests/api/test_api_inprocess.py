"""The ASGI app in process: the envelopes of errors no client input should be able to cause."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.store.sqlite import SQLiteStore

SUBMIT = {"request_type": "async", "input": {"mode": "echo", "prompt": "hi"}}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status == body["code"]
    assert body["error"]["code"] == code
    assert body["data"] is None
    assert body["trace_id"] == response.headers["x-trace-id"]
    return body


async def test_unexpected_error_is_api_error_without_internals(
    gateway: Gateway, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(_task_id: str) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(gateway.store, "get_task", broken)
    transport = httpx.ASGITransport(app=gateway.asgi(), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.get("/api/v1/statusTask/demo-echo?taskId=task_x", headers=bearer(api_key))
    body = assert_error(response, 500, "api_error")
    assert "secret internal detail" not in response.text
    assert body["trace_id"] in body["message"] or "trace_id" in body["message"]


async def test_store_failure_is_unavailable_with_retry_after(
    gateway: Gateway, http: httpx.AsyncClient, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(gateway.store, SQLiteStore)
    gateway.store.driver._reader().close()  # the database goes away under a running gateway
    response = await http.get("/api/v1/statusTask/demo-echo?taskId=task_x", headers=bearer(api_key))
    assert_error(response, 503, "unavailable")
    assert response.headers["retry-after"] == "1"
    monkeypatch.setattr(gateway.store.driver, "_read", None)


async def test_submit_then_sync_read(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.post("/api/v1/generateTask/demo-echo", json=SUBMIT, headers=bearer(api_key))
    task_id = response.json()["data"]["taskId"]
    sync = await http.post(
        "/api/v1/generateTask/demo-echo",
        json={**SUBMIT, "request_type": "sync"},
        headers=bearer(api_key),
    )
    data = sync.json()["data"]
    assert data["state"] == "success"
    assert data["taskId"] != task_id
    assert data["resultJson"].startswith('{"resultUrls":["http')


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b'{"input": {"prompt": NaN}}', "not valid JSON"),
        (b'{"input": {"data": 18446744073709551616}}', "input.data: integer out of range"),
        (b'{"input": {"prompt": "\xff\xfe"}}', "not valid JSON"),
        (b"[" * 10_000 + b"]" * 10_000, "not valid JSON"),
        (b'{"input": {"data": ' + b"[" * 40 + b"]" * 40 + b"}}", "nested deeper"),
        (b'{"input": {"data": ' + b"[" * 300 + b"]" * 300 + b"}}", "nested deeper"),
        (b"", "empty"),
        (b"[]", "JSON object"),
        (b'{"input": {}, "request_type": 7}', "request_type"),
        (b'{"input": {}, "request_type": "later"}', "request_type"),
    ],
)
async def test_hostile_bodies_are_bad_requests(
    http: httpx.AsyncClient, api_key: str, body: bytes, fragment: str
) -> None:
    response = await http.post(
        "/api/v1/generateTask/demo-echo",
        content=body,
        headers={**bearer(api_key), "content-type": "application/json"},
    )
    assert fragment in assert_error(response, 400, "bad_request")["message"]


async def test_huge_seed_names_the_field(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.post(
        "/api/v1/generateTask/demo-image",
        content=b'{"input": {"prompt": "x", "seed": 123456789012345678901234567890}}',
        headers=bearer(api_key),
    )
    assert "input.seed" in assert_error(response, 400, "bad_request")["message"]


async def test_body_over_the_limit_is_refused_from_its_declared_length(
    http: httpx.AsyncClient, api_key: str
) -> None:
    response = await http.post(
        "/api/v1/generateTask/demo-echo",
        content=b"{" + b" " * (2 << 20) + b"}",
        headers=bearer(api_key),
    )
    assert_error(response, 413, "payload_too_large")


async def test_openapi_lists_every_route(http: httpx.AsyncClient) -> None:
    document = (await http.get("/openapi.json")).json()
    assert set(document["paths"]) >= {
        "/api/v1/generateTask/{model}",
        "/api/v1/statusTask/{model}",
        "/admin/v1/keys",
        "/admin/v1/keys/{key_id}",
        "/files/{task_id}/{name}",
        "/healthz",
        "/metrics",
        "/api/v1/account",
        "/api/v1/account/rotateWebhookSecret",
        "/api/v1/tasks/{taskId}/deliveries",
        "/api/v1/tasks/{taskId}/redeliver",
    }
    assert "TextToImageInput" in document["components"]["schemas"]
    assert (await http.get("/docs")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/v1/generateTask/demo-echo/"),
        ("GET", "/api/v1/statusTask/"),
        ("GET", "/api/v1/statusTask/demo-echo/extra"),
        ("GET", "/api/v2/anything"),
    ],
)
async def test_wrong_paths_are_no_api_not_redirects(
    http: httpx.AsyncClient, api_key: str, method: str, path: str
) -> None:
    response = await http.request(method, path, headers=bearer(api_key), json=SUBMIT)
    assert_error(response, 404, "no_api")


async def test_unexpected_error_is_not_raised_to_the_server(
    gateway: Gateway, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The error is answered and logged once; raising it further would drop the connection."""

    async def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(gateway.tasks, "submit", broken)
    transport = httpx.ASGITransport(app=gateway.asgi(), raise_app_exceptions=True)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        response = await http.post("/api/v1/generateTask/demo-echo", json=SUBMIT, headers=bearer(api_key))
    assert_error(response, 500, "api_error")


async def test_openapi_covers_every_route_of_the_app(gateway: Gateway, http: httpx.AsyncClient) -> None:
    """Every Starlette route (but the docs themselves, packaged assets and the console's HTML
    pages) has its path in the document."""
    from starlette.applications import Starlette
    from starlette.routing import Mount, Route

    document = (await http.get("/openapi.json")).json()
    app: Any = gateway.asgi()
    while not isinstance(app, Starlette):
        app = app.app
    for route in app.routes:
        if isinstance(route, Mount) or route.path == "/" or route.path.startswith("/console"):
            continue
        assert isinstance(route, Route)
        if route.path in {"/openapi.json", "/docs"}:
            continue
        # A converter (`{path:path}`) is the plain parameter in OpenAPI's templates.
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path).replace("{task_id}", "{taskId}")
        documented = document["paths"].get(path) or document["paths"].get(route.path)
        assert documented is not None, route.path
        methods = {m.lower() for m in route.methods or ()} - {"head"}
        assert methods <= set(documented), route.path
