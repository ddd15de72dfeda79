"""Every error code of DESIGN.md's table that this build can produce, over real HTTP.

Each check goes through `assert_error`: HTTP status == body `code`, `error.code`, `data`
null, and a non-empty `trace_id` equal to the `X-Trace-Id` header.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.e2e

IMAGE = {"mode": "text-to-image", "prompt": "errors", "width": 16, "height": 16}
GENERATE = "/api/v1/generateTask/demo-image"


def now_ms() -> int:
    return int(time.time() * 1000)


def post_raw(server: Any, key: str, content: bytes | Iterator[bytes], path: str = GENERATE) -> httpx.Response:
    headers = {**server.auth(key), "Content-Type": "application/json"}
    return server.http.post(path, content=content, headers=headers)


# -- bad_request -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "mentions"),
    [
        pytest.param(b'{"request_type": "async", "input": ', "JSON", id="malformed-json"),
        pytest.param(b"", "empty", id="empty-body"),
        pytest.param(b"[1, 2, 3]", "object", id="array-body"),
        pytest.param(b'"a string"', "object", id="string-body"),
        pytest.param(b"null", "object", id="null-body"),
        pytest.param(b'{"request_type": "async"}', "input", id="missing-input"),
        pytest.param(b'{"input": "text"}', "input", id="input-not-object"),
        pytest.param(b'{"input": {"mode": "text-to-image"}}', "prompt", id="missing-prompt"),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "width": "a"}}',
            "input.width",
            id="width-type",
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "width": 100000}}',
            "input.width",
            id="width-range",
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "n": 1.5}}', "input.n", id="n-float"
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "n": true}}', "input.n", id="n-bool"
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": ""}}', "input.prompt", id="empty-prompt"
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "seed": -1}}',
            "input.seed",
            id="negative-seed",
        ),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "fail_code": "lower"}}',
            "input.fail_code",
            id="fail-code-pattern",
        ),
        pytest.param(b'{"input": {"mode": "echo", "data": NaN}}', "JSON", id="nan"),
        pytest.param(b'{"input": {"mode": "echo", "data": "\\ud800"}}', "JSON", id="lone-surrogate"),
        pytest.param(b'\xff\xfe{"input": {}}', "JSON", id="not-utf8"),
        pytest.param(
            b'{"input": {"mode": "text-to-image", "prompt": "p", "foo": 1}}', "foo", id="unknown-field"
        ),
        pytest.param(b'{"input": {"mode": "text-to-video", "prompt": "p"}}', "mode", id="unknown-mode"),
        pytest.param(b'{"input": {"mode": 3, "prompt": "p"}}', "mode", id="mode-not-string"),
        pytest.param(
            b'{"request_type": "later", "input": {"mode": "text-to-image", "prompt": "p"}}',
            "request_type",
            id="unknown-request-type",
        ),
        pytest.param(
            b'{"request_type": 1, "input": {"mode": "text-to-image", "prompt": "p"}}',
            "request_type",
            id="request-type-not-string",
        ),
    ],
)
def test_bad_submit_body(
    gengate_server: Any, api_key: str, assert_error: Any, content: bytes, mentions: str
) -> None:
    assert_error(post_raw(gengate_server, api_key, content), 400, "bad_request", mentions=mentions)


def test_callback_without_url_or_to_a_private_address_is_refused(
    gengate_server: Any, api_key: str, assert_error: Any
) -> None:
    response = gengate_server.submit(api_key, "demo-image", IMAGE, request_type="callback")
    assert_error(response, 400, "bad_request", mentions="callback_url")
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/latest", "ftp://example.com/x"):
        response = gengate_server.submit(
            api_key, "demo-image", IMAGE, request_type="callback", callback_url=url
        )
        assert_error(response, 400, "bad_request", mentions="callback_url")


def test_status_without_task_id(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    auth = gengate_server.auth(api_key)
    response = gengate_server.http.get("/api/v1/statusTask/demo-image", headers=auth)
    assert_error(response, 400, "bad_request", mentions="taskId")
    response = gengate_server.http.get("/api/v1/statusTask/demo-image?taskId=", headers=auth)
    assert_error(response, 400, "bad_request", mentions="taskId")


# -- authentication ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-header"),
        pytest.param({"Authorization": "Basic xyz"}, id="basic"),
        pytest.param({"Authorization": "Bearer"}, id="bearer-without-key"),
        pytest.param({"Authorization": "Token abc"}, id="other-scheme"),
    ],
)
def test_no_token(gengate_server: Any, assert_error: Any, headers: dict[str, str]) -> None:
    response = gengate_server.http.post(GENERATE, json={"input": IMAGE}, headers=headers)
    assert_error(response, 401, "no_token")
    response = gengate_server.http.get("/api/v1/statusTask/demo-image?taskId=task_x", headers=headers)
    assert_error(response, 401, "no_token")


def test_invalid_token(gengate_server: Any, assert_error: Any) -> None:
    bogus = gengate_server.auth("gg_" + secrets.token_urlsafe(32))
    assert_error(
        gengate_server.http.post(GENERATE, json={"input": IMAGE}, headers=bogus), 401, "invalid_token"
    )
    response = gengate_server.http.get("/api/v1/statusTask/demo-image?taskId=task_x", headers=bogus)
    assert_error(response, 401, "invalid_token")


def test_bearer_scheme_is_case_insensitive(gengate_server: Any, api_key: str) -> None:
    response = gengate_server.http.post(
        GENERATE, json={"input": IMAGE}, headers={"Authorization": f"bearer {api_key}"}
    )
    assert response.status_code == 200, response.text


def test_token_expired(gengate_server: Any, assert_error: Any) -> None:
    created = gengate_server.create_key("expiring", expires_at=now_ms() + 3_600_000)
    key = created["key"]
    task_id = gengate_server.submit_ok(key, "demo-echo", {"mode": "echo"})
    updated = gengate_server.update_key(created["id"], expires_at=now_ms() - 1000)
    assert updated["expires_at"] < now_ms()
    assert_error(gengate_server.submit(key, "demo-echo", {"mode": "echo"}), 401, "token_expired")
    assert_error(gengate_server.status(key, "demo-echo", task_id), 401, "token_expired")
    gengate_server.update_key(created["id"], expires_at=None)
    assert gengate_server.status(key, "demo-echo", task_id).status_code == 200


def test_key_created_already_expired(gengate_server: Any, assert_error: Any) -> None:
    key = gengate_server.create_key("born-expired", expires_at=now_ms() - 1)["key"]
    assert_error(gengate_server.submit(key, "demo-echo", {"mode": "echo"}), 401, "token_expired")


def test_token_mismatched(gengate_server: Any, assert_error: Any) -> None:
    created = gengate_server.create_key("echo-only", models=["demo-echo"])
    assert created["models"] == ["demo-echo"]
    key = created["key"]
    assert_error(
        gengate_server.submit(key, "demo-image", IMAGE), 401, "token_mismatched", mentions="demo-image"
    )
    gengate_server.submit_ok(key, "demo-echo", {"mode": "echo"})
    # Lifting the restriction lets it use every model; an empty list allows none.
    assert gengate_server.update_key(created["id"], models=None)["models"] is None
    gengate_server.submit_ok(key, "demo-image", IMAGE)
    assert gengate_server.update_key(created["id"], models=[])["models"] == []
    assert_error(gengate_server.submit(key, "demo-echo", {"mode": "echo"}), 401, "token_mismatched")


def test_disabled(gengate_server: Any, assert_error: Any) -> None:
    created = gengate_server.create_key("to-disable")
    key = created["key"]
    task_id = gengate_server.submit_ok(key, "demo-echo", {"mode": "echo"})
    assert gengate_server.update_key(created["id"], disabled=True)["disabled"] is True
    assert_error(gengate_server.submit(key, "demo-echo", {"mode": "echo"}), 403, "disabled")
    assert_error(gengate_server.status(key, "demo-echo", task_id), 403, "disabled")
    assert gengate_server.update_key(created["id"], disabled=False)["disabled"] is False
    assert gengate_server.status(key, "demo-echo", task_id).status_code == 200
    gengate_server.submit_ok(key, "demo-echo", {"mode": "echo"})


def test_key_created_disabled(gengate_server: Any, assert_error: Any) -> None:
    key = gengate_server.create_key("born-disabled", disabled=True)["key"]
    assert_error(gengate_server.submit(key, "demo-echo", {"mode": "echo"}), 403, "disabled")


# -- routes, models, tasks ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("POST", "/api/v1/nope"),
        ("GET", "/api/v1/generateTask"),
        ("GET", "/api/v2/statusTask/demo-image"),
    ],
)
def test_no_api(gengate_server: Any, api_key: str, assert_error: Any, method: str, path: str) -> None:
    response = gengate_server.http.request(method, path, headers=gengate_server.auth(api_key))
    assert_error(response, 404, "no_api")


def test_wrong_method(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    auth = gengate_server.auth(api_key)
    response = gengate_server.http.get(GENERATE, headers=auth)
    assert_error(response, 405, "no_api")
    assert "POST" in response.headers["allow"]
    response = gengate_server.http.post("/api/v1/statusTask/demo-image?taskId=task_x", headers=auth, json={})
    assert_error(response, 405, "no_api")
    assert "GET" in response.headers["allow"]


def test_model_not_found(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    response = gengate_server.submit(api_key, "no-such-model", IMAGE)
    assert_error(response, 404, "model_not_found", mentions="no-such-model")
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo"})
    assert_error(gengate_server.status(api_key, "no-such-model", task_id), 404, "model_not_found")


def test_task_not_found(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    random_id = "task_" + secrets.token_urlsafe(16)
    assert_error(gengate_server.status(api_key, "demo-image", random_id), 404, "task_not_found")
    assert_error(gengate_server.status(api_key, "demo-image", "not-even-a-task-id"), 404, "task_not_found")


def test_other_keys_task_is_not_found(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    owner = gengate_server.create_key("owner")["key"]
    task_id = gengate_server.submit_ok(owner, "demo-echo", {"mode": "echo"})
    assert gengate_server.status(owner, "demo-echo", task_id).status_code == 200
    body = assert_error(gengate_server.status(api_key, "demo-echo", task_id), 404, "task_not_found")
    # Exactly what an unknown id gets: nothing tells the task exists.
    unknown = assert_error(
        gengate_server.status(api_key, "demo-echo", "task_" + "A" * 22), 404, "task_not_found"
    )
    assert body["error"]["message"].replace(task_id, "ID") == unknown["error"]["message"].replace(
        "task_" + "A" * 22, "ID"
    )


def test_task_under_another_model_is_not_found(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    """Its own key is told which model the task belongs to; another key still learns nothing."""
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo"})
    mentions = f"Task '{task_id}' belongs to model 'demo-echo', not 'demo-image'"
    assert_error(
        gengate_server.status(api_key, "demo-image", task_id), 404, "task_not_found", mentions=mentions
    )
    cancel = gengate_server.http.post(
        "/api/v1/cancelTask/demo-image", params={"taskId": task_id}, headers=gengate_server.auth(api_key)
    )
    assert_error(cancel, 404, "task_not_found", mentions=mentions)
    other = gengate_server.create_key("other-model-path")["key"]
    body = assert_error(gengate_server.status(other, "demo-image", task_id), 404, "task_not_found")
    assert body["error"]["message"] == f"Task '{task_id}' does not exist for this key."


def test_deeply_nested_input_is_a_bad_request(start_gengate: Any, assert_error: Any) -> None:
    """Client input must never cause a 500. (Own server: the 500 logs a traceback and uvicorn
    then drops the connection, which must not disturb the shared server.)"""
    server = start_gengate("deep-json")
    key = server.create_key("deep")["key"]
    depth = 300
    content = b'{"input": {"mode": "echo", "data": ' + b"[" * depth + b"]" * depth + b"}}"
    response = post_raw(server, key, content, "/api/v1/generateTask/demo-echo")
    assert_error(response, 400, "bad_request")


# -- size --------------------------------------------------------------------------------
def test_payload_too_large(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    big = b'{"input": {"mode": "echo", "data": "' + b"x" * (2 << 20) + b'"}}'
    response = post_raw(gengate_server, api_key, big, "/api/v1/generateTask/demo-echo")
    assert_error(response, 413, "payload_too_large")


def test_payload_too_large_without_content_length(
    gengate_server: Any, api_key: str, assert_error: Any
) -> None:
    """Chunked: the server must count while reading, not trust a header."""

    def chunks() -> Iterator[bytes]:
        yield b'{"input": {"mode": "echo", "data": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}}'

    response = post_raw(gengate_server, api_key, chunks(), "/api/v1/generateTask/demo-echo")
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert_error(response, 413, "payload_too_large")


def test_body_just_under_the_limit_is_accepted(gengate_server: Any, api_key: str) -> None:
    """The limit is 1 MiB: a 900 KiB body is fine (and echoed back)."""
    data = "y" * (900 << 10)
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo", "data": data})
    result = gengate_server.wait_task(api_key, "demo-echo", task_id)
    assert result["state"] == "success", result


# -- admin -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "call",
    [
        pytest.param(("POST", "/admin/v1/keys", {"name": "sneaky"}), id="create"),
        pytest.param(("GET", "/admin/v1/keys", None), id="list"),
        pytest.param(("PATCH", "/admin/v1/keys/key_0000000000000000", {"disabled": True}), id="update"),
    ],
)
def test_admin_refuses_api_keys(
    gengate_server: Any, api_key: str, assert_error: Any, call: tuple[str, str, Any]
) -> None:
    method, path, body = call
    auth = gengate_server.auth(api_key)
    assert_error(gengate_server.http.request(method, path, headers=auth, json=body), 401, "invalid_token")
    assert_error(gengate_server.http.request(method, path, json=body), 401, "no_token")


def test_admin_patch_of_unknown_key(gengate_server: Any, assert_error: Any) -> None:
    response = gengate_server.admin("PATCH", "/admin/v1/keys/key_ffffffffffffffff", json={"disabled": True})
    assert_error(response, 404, "key_not_found")


def test_admin_bad_bodies(gengate_server: Any, assert_error: Any) -> None:
    assert_error(gengate_server.admin("POST", "/admin/v1/keys", json={}), 400, "bad_request", mentions="name")
    response = gengate_server.admin("POST", "/admin/v1/keys", json={"name": "x", "models": ["nope"]})
    assert_error(response, 400, "bad_request", mentions="nope")
    response = gengate_server.admin("POST", "/admin/v1/keys", json={"name": "x", "colour": "red"})
    assert_error(response, 400, "bad_request", mentions="colour")


def test_admin_list_shows_keys_but_never_secrets(gengate_server: Any) -> None:
    created = gengate_server.create_key("listed", models=["demo-echo"])
    response = gengate_server.admin("GET", "/admin/v1/keys")
    assert response.status_code == 200
    assert created["key"] not in response.text
    assert "hash" not in response.text
    keys = {key["id"]: key for key in response.json()["data"]["keys"]}
    listed = keys[created["id"]]
    assert listed["name"] == "listed"
    assert listed["models"] == ["demo-echo"]
    assert listed["disabled"] is False
    assert created["key"].startswith(listed["prefix"])


# -- trace ids ---------------------------------------------------------------------------
def test_trace_ids_on_every_response(gengate_server: Any, api_key: str) -> None:
    """Success, error, health, admin and file responses all carry a fresh `X-Trace-Id`.

    (The `http` client checks the header and its uniqueness on every response of every test;
    this one makes sure each kind of response is covered, and checks the id's form.)
    """
    auth = gengate_server.auth(api_key)
    task_id = gengate_server.submit_ok(api_key, "demo-echo", {"mode": "echo"})
    data = gengate_server.wait_task(api_key, "demo-echo", task_id)
    url = json.loads(data["resultJson"])["resultUrls"][0]
    responses = [
        gengate_server.http.get("/healthz"),
        gengate_server.http.get(url),
        gengate_server.http.head(url),
        gengate_server.http.get(url + "x"),
        gengate_server.http.get(f"/api/v1/statusTask/demo-echo?taskId={task_id}", headers=auth),
        gengate_server.http.get("/nope"),
        gengate_server.http.post(GENERATE, content=b"{", headers=auth),
        gengate_server.admin("GET", "/admin/v1/keys"),
        gengate_server.http.get("/admin/v1/keys"),
    ]
    trace_ids = [response.headers["x-trace-id"] for response in responses]
    assert len(set(trace_ids)) == len(trace_ids)
    for trace_id in trace_ids:
        uuid.UUID(trace_id)
    assert [r.status_code for r in responses] == [200, 200, 200, 403, 200, 404, 400, 200, 401]
