"""Where the clients get their gateway and key from, and the requests `submit(callback_url=...)` and
`account()` make."""

from __future__ import annotations

import json

import httpx
import pytest

from gengate import AsyncClient, Client

DEFAULT_URL = "http://127.0.0.1:8000"


class Recorder:
    """Answers every request with a success envelope and keeps what it saw."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        data = {"taskId": "task_1"} if request.method == "POST" else {"id": "key_1", "webhook_secret": "s"}
        return httpx.Response(200, json={"code": 200, "message": "success", "data": data})


@pytest.fixture(autouse=True)
def no_gengate_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GENGATE_API_KEY", "GENGATE_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_client_reads_key_and_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_API_KEY", "gg_from_env")
    monkeypatch.setenv("GENGATE_BASE_URL", "http://gw.example:9000")
    seen = Recorder()
    with Client(transport=httpx.MockTransport(seen)) as client:
        assert client.base_url == "http://gw.example:9000"
        client.submit("demo-image", {"prompt": "x"})
    request = seen.requests[0]
    assert str(request.url) == "http://gw.example:9000/api/v1/generateTask/demo-image"
    assert request.headers["Authorization"] == "Bearer gg_from_env"


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_API_KEY", "gg_from_env")
    monkeypatch.setenv("GENGATE_BASE_URL", "http://gw.example:9000")
    seen = Recorder()
    with Client("http://other.example", "gg_given", transport=httpx.MockTransport(seen)) as client:
        client.submit("demo-image", {"prompt": "x"})
    assert seen.requests[0].url.host == "other.example"
    assert seen.requests[0].headers["Authorization"] == "Bearer gg_given"


def test_default_url_is_the_local_gateway(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_API_KEY", "gg_from_env")
    with Client() as client:
        assert client.base_url == DEFAULT_URL


@pytest.mark.parametrize("make", [Client, AsyncClient])
def test_no_key_anywhere_says_how_to_give_one(make: type[Client] | type[AsyncClient]) -> None:
    with pytest.raises(ValueError, match="GENGATE_API_KEY"):
        make()


async def test_async_client_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENGATE_API_KEY", "gg_async")
    monkeypatch.setenv("GENGATE_BASE_URL", "http://gw.example:9001")
    seen = Recorder()
    async with AsyncClient(transport=httpx.MockTransport(seen)) as client:
        await client.submit("demo-echo", {"prompt": "x"})
        account = await client.account()
    assert account["webhook_secret"] == "s"
    assert seen.requests[0].headers["Authorization"] == "Bearer gg_async"
    assert str(seen.requests[1].url) == "http://gw.example:9001/api/v1/account"


def test_submit_with_a_callback_url() -> None:
    seen = Recorder()
    with Client("http://gw.test", "k", transport=httpx.MockTransport(seen)) as client:
        client.submit("demo-echo", {"prompt": "x"}, callback_url="https://me.example/hook")
        with pytest.raises(ValueError, match="callback_url"):
            client.submit(
                "demo-echo", {"prompt": "x"}, request_type="sync", callback_url="https://me.example/h"
            )
    body = json.loads(seen.requests[0].content)
    assert body == {
        "request_type": "callback",
        "callback_url": "https://me.example/hook",
        "input": {"prompt": "x"},
    }
    assert len(seen.requests) == 1


def test_account_reads_the_webhook_secret() -> None:
    seen = Recorder()
    with Client("http://gw.test", "k", transport=httpx.MockTransport(seen)) as client:
        assert client.account() == {"id": "key_1", "webhook_secret": "s"}
    assert seen.requests[0].url.path == "/api/v1/account"
    assert seen.requests[0].headers["Authorization"] == "Bearer k"
