"""Per-key rate limits over HTTP (in process, windows in memory): every route of a key's,
the status hot path included, counts against one moving window."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gengate.runtime import Gateway
from gengate.settings import Settings

ADMIN = {"Authorization": "Bearer gga_test_admin_key"}


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[tuple[httpx.AsyncClient, Gateway]]:
    """A gateway whose default limit is 5 requests a minute per key."""
    gateway = Gateway(settings.model_copy(update={"rate_limit": "5/minute"}))
    async with gateway.running():
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield http, gateway


async def create_key(http: httpx.AsyncClient, **fields: Any) -> str:
    response = await http.post("/admin/v1/keys", json={"name": "rl", **fields}, headers=ADMIN)
    assert response.status_code == 200, response.text
    key: str = response.json()["data"]["key"]
    return key


async def test_every_route_counts_and_the_one_past_the_limit_is_refused(
    limited: tuple[httpx.AsyncClient, Gateway],
) -> None:
    http, _gateway = limited
    key = await create_key(http, rate_limit="3/minute")
    submitted = await http.post(
        "/api/v1/generateTask/demo-echo", json={"input": {"prompt": "x"}}, headers=auth(key)
    )
    task_id = submitted.json()["data"]["taskId"]
    status = await http.get("/api/v1/statusTask/demo-echo", params={"taskId": task_id}, headers=auth(key))
    account = await http.get("/api/v1/account", headers=auth(key))
    for response, remaining in ((submitted, 2), (status, 1), (account, 0)):
        assert response.status_code == 200, response.text
        assert response.headers["x-ratelimit-limit"] == "3"
        assert response.headers["x-ratelimit-remaining"] == str(remaining)
        assert int(response.headers["x-ratelimit-reset"]) > time.time()
    for method, path, params in (
        ("GET", "/api/v1/statusTask/demo-echo", {"taskId": task_id}),  # the hot path
        ("GET", "/api/v1/jobs/recordInfo", {"taskId": task_id}),  # the KIE hot path
        ("GET", "/api/v1/models", {}),
        ("POST", "/api/v1/generateTask/demo-echo", {}),
    ):
        refused = await http.request(method, path, params=params, headers=auth(key), json={"input": {}})
        assert refused.status_code == 429, (path, refused.text)
        body = refused.json()
        assert body["error"]["code"] == "too_many_requests"
        assert body["code"] == 429
        assert ("msg" if "/jobs/" in path else "message") in body
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert refused.headers["x-ratelimit-remaining"] == "0"
        assert refused.headers["x-trace-id"] == body["trace_id"]
    run = await http.post("/api/v1/run/demo-echo", json={}, headers=auth(key))
    assert run.status_code == 429
    assert set(run.json()) == {"error", "trace_id"}  # XHuo's envelope


async def test_the_default_applies_to_keys_without_their_own(
    limited: tuple[httpx.AsyncClient, Gateway],
) -> None:
    http, _gateway = limited
    key = await create_key(http)
    answers = [(await http.get("/api/v1/models", headers=auth(key))).status_code for _ in range(6)]
    assert answers == [200] * 5 + [429]
    other = await create_key(http)  # windows are per key
    assert (await http.get("/api/v1/models", headers=auth(other))).status_code == 200


async def test_a_key_changed_by_an_admin_gets_its_new_limit(
    limited: tuple[httpx.AsyncClient, Gateway],
) -> None:
    http, gateway = limited
    response = await http.post("/admin/v1/keys", json={"name": "rl"}, headers=ADMIN)
    key, key_id = response.json()["data"]["key"], response.json()["data"]["id"]
    await http.patch(f"/admin/v1/keys/{key_id}", json={"rate_limit": "100/minute"}, headers=ADMIN)
    gateway.keys._cache.clear()  # another process would see it within the cache's lifetime
    answers = [(await http.get("/api/v1/models", headers=auth(key))).status_code for _ in range(8)]
    assert answers == [200] * 8


async def test_no_limit_no_headers(http: httpx.AsyncClient, api_key: str) -> None:
    response = await http.get("/api/v1/models", headers=auth(api_key))
    assert response.status_code == 200
    assert "x-ratelimit-limit" not in response.headers


async def test_unknown_keys_are_not_counted_and_get_401(limited: tuple[httpx.AsyncClient, Gateway]) -> None:
    http, _gateway = limited
    for _ in range(8):
        response = await http.get("/api/v1/models", headers=auth("gg_unknown"))
        assert response.status_code == 401
