"""Signed result URLs: tampering is refused, and they expire `result_ttl` after completion."""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

pytestmark = pytest.mark.e2e

ECHO = {"mode": "echo", "prompt": "file"}


def finished_url(server: Any, key: str, model: str = "demo-echo") -> tuple[dict[str, Any], str]:
    task_id = server.submit_ok(key, model, ECHO)
    data = server.wait_task(key, model, task_id)
    assert data["state"] == "success", data
    return data, json.loads(data["resultJson"])["resultUrls"][0]


def split(url: str) -> tuple[str, str, int, str]:
    """(base, path, expires, signature) of a result URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, strict_parsing=True)
    assert set(query) == {"expires", "signature"}, url
    base = urlunsplit((parts.scheme, parts.netloc, "", "", ""))
    return base, parts.path, int(query["expires"][0]), query["signature"][0]


def build(base: str, path: str, expires: int | str, signature: str) -> str:
    return f"{base}{path}?{urlencode({'expires': expires, 'signature': signature})}"


def flip(text: str) -> str:
    """`text` with its last character changed (still URL-safe base64)."""
    return text[:-1] + ("A" if text[-1] != "A" else "B")


def test_url_expiry_counts_from_completion(gengate_server: Any, api_key: str) -> None:
    data, url = finished_url(gengate_server, api_key)
    _, path, expires, _ = split(url)
    assert path == f"/files/{data['taskId']}/result.json"
    assert expires == data["completeTime"] + 86_400 * 1000
    time.sleep(0.01)
    again = gengate_server.status_data(api_key, "demo-echo", data["taskId"])
    assert again["resultJson"] == data["resultJson"], "result URLs must not change between reads"


def test_tampered_urls_are_forbidden(gengate_server: Any, api_key: str, assert_error: Any) -> None:
    _, url = finished_url(gengate_server, api_key)
    other_data, other_url = finished_url(gengate_server, api_key)
    base, path, expires, signature = split(url)
    _, other_path, _, _ = split(other_url)
    assert gengate_server.http.get(url).status_code == 200

    forged = {
        "signature": build(base, path, expires, flip(signature)),
        "expires": build(base, path, expires + 1, signature),
        "later-expires": build(base, path, expires + 86_400_000, signature),
        "other-task": build(base, other_path, expires, signature),
        "other-name": build(base, path.replace("result.json", "0.png"), expires, signature),
        "no-signature": f"{base}{path}?expires={expires}",
        "no-expires": f"{base}{path}?signature={signature}",
        "no-query": f"{base}{path}",
        "empty-signature": build(base, path, expires, ""),
        "expires-not-a-number": build(base, path, "soon", signature),
    }
    for name, forged_url in forged.items():
        response = gengate_server.http.get(forged_url)
        body = assert_error(response, 403, "forbidden")
        assert "expired" not in body["error"]["message"].lower(), (name, body)
        assert response.content.find(b"\x89PNG") == -1
    # The real URLs still work.
    assert gengate_server.http.get(url).status_code == 200
    assert gengate_server.http.get(other_url).status_code == 200
    assert other_data["taskId"] in other_path


def test_result_file_needs_no_api_key_and_has_a_type(gengate_server: Any, api_key: str) -> None:
    _, url = finished_url(gengate_server, api_key)
    response = gengate_server.http.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.json()["prompt"] == "file"
    head = gengate_server.http.head(url)
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["content-length"] == str(len(response.content))
    assert head.headers["content-type"] == response.headers["content-type"]


def test_urls_expire_ttl_after_completion(short_server: Any, assert_error: Any) -> None:
    """On a server with `GENGATE_RESULT_TTL=1`: the URL works at first, and is refused as
    expired once a second has passed since `completeTime`."""
    key = short_server.create_key("ttl")["key"]
    # `sync` answers the moment the task is done, so the download starts well inside the second.
    response = short_server.submit(key, "demo-echo", ECHO, request_type="sync")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["state"] == "success", data
    url = json.loads(data["resultJson"])["resultUrls"][0]
    _, _, expires, _ = split(url)
    assert expires == data["completeTime"] + 1000
    assert time.time() * 1000 < expires - 100, "too slow to check the URL before it expires"
    first = short_server.http.get(url)
    assert first.status_code == 200, first.text

    time.sleep(max(0.0, (expires - time.time() * 1000) / 1000) + 0.2)
    later = short_server.http.get(url)
    assert_error(later, 403, "forbidden", mentions="expired")
    # The status read still gives the same (now expired) URL: expiry counts from completion.
    again = short_server.status_data(key, "demo-echo", data["taskId"])
    assert again["resultJson"] == data["resultJson"]
