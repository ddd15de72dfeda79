"""`gengate generate` / `gengate status` through CliRunner, with the HTTP transport injected as `obj`."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
from click.testing import CliRunner, Result

from gengate.cli.generate import generate_command, parse_param, result_filename, status_command
from gengate.client import _sync

KEY = "sk_cli"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 1000
TASK = "task_0123456789abcdefghijkl"


class Server:
    """Just enough of the APIXO dialect: one task that runs `script`, results under /files/."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script
        self.polls = 0
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path.startswith("/files/"):
            return httpx.Response(200, content=PNG)
        if request.headers.get("Authorization") != f"Bearer {KEY}":
            body = {"code": 401, "message": "Unauthorized", "data": None, "trace_id": "tr-9"}
            return httpx.Response(
                401, json={**body, "error": {"code": "invalid_token", "message": "bad key"}}
            )
        if request.method == "POST":
            return envelope({"taskId": TASK})
        step = self.script[min(self.polls, len(self.script) - 1)]
        self.polls += 1
        data = {"taskId": TASK, "createTime": 1704067200000, **step}
        if step["state"] == "success":
            urls = [
                f"{request.url.scheme}://{request.url.host}/files/{TASK}/{n}.png?sig=abc" for n in range(2)
            ]
            data |= {
                "resultJson": json.dumps({"resultUrls": urls}),
                "costTime": 1500,
                "completeTime": 1704067201500,
            }
        elif step["state"] == "failed":
            data |= {"failCode": "CONTENT_VIOLATION", "failMsg": "Content violates usage policy"}
        return envelope(data)


def envelope(data: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={"code": 200, "message": "success", "data": data})


SUCCESS: list[dict[str, Any]] = [
    {"state": "pending"},
    {"state": "processing", "progress": 50},
    {"state": "success"},
]


@pytest.fixture(autouse=True)
def fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No real sleeping: poll delays are skipped and retries do not back off."""
    monkeypatch.setattr(_sync, "sleep", lambda _delay: None)
    with stamina.set_testing(True, attempts=3):
        yield


def invoke(command: Any, args: list[str], server: Any, **env: str) -> Result:
    env = {"GENGATE_API_KEY": KEY, "GENGATE_URL": "http://gw.test", **env}
    return CliRunner().invoke(command, args, obj=httpx.MockTransport(server), env=env)


def test_generate_saves_results(tmp_path: Path) -> None:
    server = Server(SUCCESS)
    args = ["demo", "--prompt", "a cat", "--mode", "text-to-image", "--out", str(tmp_path / "out")]
    args += [
        "--param",
        "width=256",
        "--param",
        "seed=7",
        "--param",
        "style=oil paint",
        "--param",
        "tags=[1,2]",
    ]
    result = invoke(generate_command, args, server)
    assert result.exit_code == 0, result.output
    saved = [tmp_path / "out" / f"{TASK}_{n}.png" for n in range(2)]
    assert result.stdout.split() == [str(p) for p in saved]
    assert all(p.read_bytes() == PNG for p in saved)
    submit = json.loads(server.requests[0].content)
    assert submit == {
        "request_type": "async",
        "input": {
            "mode": "text-to-image",
            "prompt": "a cat",
            "width": 256,
            "seed": 7,
            "style": "oil paint",
            "tags": [1, 2],
        },
    }
    assert server.requests[0].url.host == "gw.test"
    assert "success" in result.stderr


def test_generate_reports_task_failure() -> None:
    result = invoke(generate_command, ["demo", "--prompt", "x"], Server([{"state": "failed"}]))
    assert result.exit_code == 1
    assert "CONTENT_VIOLATION: Content violates usage policy" in result.stderr
    assert result.stdout == ""


def test_generate_reports_api_error() -> None:
    result = invoke(generate_command, ["demo", "--prompt", "x", "--key", "wrong"], Server(SUCCESS))
    assert result.exit_code == 2
    assert "invalid_token: bad key (trace_id tr-9)" in result.stderr


def test_generate_times_out() -> None:
    result = invoke(
        generate_command, ["demo", "--prompt", "x", "--timeout", "0"], Server([{"state": "pending"}])
    )
    assert result.exit_code == 3
    assert f"task {TASK} not finished" in result.stderr


def test_unreachable_gateway() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    result = invoke(status_command, ["demo", TASK], refuse)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "retrying in 0.0 s: connection refused",
        "retrying in 0.0 s: connection refused",
        "cannot reach http://gw.test: connection refused",
    ]


def test_missing_key_is_a_clear_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENGATE_API_KEY", raising=False)
    result = CliRunner().invoke(
        generate_command, ["demo", "--prompt", "x"], obj=httpx.MockTransport(Server(SUCCESS))
    )
    assert result.exit_code == 2
    assert "GENGATE_API_KEY" in result.stderr


@pytest.mark.parametrize("param", ["novalue", "=1", "prompt=other"])
def test_bad_param(param: str) -> None:
    result = invoke(generate_command, ["demo", "--prompt", "x", "--param", param], Server(SUCCESS))
    assert result.exit_code == 2
    assert "--param" in result.stderr


def test_status_human_and_json() -> None:
    server = Server([{"state": "processing", "progress": 40}])
    human = invoke(status_command, ["demo", TASK], server)
    assert human.exit_code == 0, human.output
    assert "processing" in human.stdout
    assert "40%" in human.stdout
    as_json = invoke(status_command, ["demo", TASK, "--json"], server)
    assert json.loads(as_json.stdout) == {
        "taskId": TASK,
        "state": "processing",
        "progress": 40,
        "createTime": 1704067200000,
    }
    assert server.requests[-1].url.params["taskId"] == TASK


def test_status_of_finished_tasks() -> None:
    done = invoke(status_command, ["demo", TASK], Server([{"state": "success"}]))
    assert "cost       1.5 s" in done.stdout
    assert f"result     http://gw.test/files/{TASK}/0.png?sig=abc" in done.stdout
    failed = invoke(status_command, ["demo", TASK], Server([{"state": "failed"}]))
    assert "CONTENT_VIOLATION: Content violates usage policy" in failed.stdout


def test_helpers() -> None:
    assert parse_param("n=3") == ("n", 3)
    assert parse_param("ratio=16:9") == ("ratio", "16:9")
    assert parse_param("s=") == ("s", "")
    assert result_filename("task_1", 0, "http://h/f/x.PNG?sig=1") == "task_1_0.png"
    assert result_filename("task_1", 2, "http://h/f/noext") == "task_1_2"
    assert result_filename("task_1", 1, "http://h/f/a.tar.gz") == "task_1_1.gz"
