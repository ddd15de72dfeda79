"""The console's security properties over plain HTTP against a real `gengate serve`: one key's
session never shows another key's tasks; a POST without the session's CSRF token is refused; a
key's owner cannot open the operator's pages (nor the operator a key's); no page shows the key
after sign-in; sign-out ends the session on the server; failed sign-ins are rate-limited; pages
carry a strict Content-Security-Policy and their assets a long cache lifetime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import Receiver, console_client, csrf_of
from standardwebhooks.webhooks import Webhook

from e2e_harness import harness

pytestmark = pytest.mark.e2e

USER_PAGES = ("/console/playground", "/console/tasks", "/console/usage", "/console/webhooks")
ADMIN_PAGES = ("/console/keys", "/console/models", "/console/health")


def submit_in_console(client: httpx.Client, prompt: str) -> str:
    page = client.get("/console/playground?model=demo-echo")
    form = {"csrf": csrf_of(page.text), "model": "demo-echo", "mode": "echo", "in.prompt": prompt}
    response = client.post("/console/playground", data=form)
    assert response.status_code == 303, response.text
    return response.headers["location"].split("task=", 1)[1]


def test_a_session_never_shows_another_keys_tasks(console_server: Any) -> None:
    alice = console_client(console_server, console_server.create_key("alice")["key"])
    bob = console_client(console_server, console_server.create_key("bob")["key"])
    task_id = submit_in_console(alice, "alice's secret prompt")
    assert task_id in alice.get("/console/tasks").text
    assert alice.get(f"/console/tasks/{task_id}").status_code == 200
    listing = bob.get("/console/tasks")
    assert listing.status_code == 200
    assert task_id not in listing.text
    assert task_id not in bob.get("/console/tasks/rows").text
    for path in (
        f"/console/tasks/{task_id}",
        f"/console/tasks/{task_id}/events",
        f"/console/tasks/{task_id}/live",
    ):
        response = bob.get(path)
        assert response.status_code == 404, path
        assert "alice's secret prompt" not in response.text
    page = bob.get("/console/playground")
    assert bob.post(f"/console/tasks/{task_id}/cancel", data={"csrf": csrf_of(page.text)}).status_code == 404


def test_a_post_without_the_csrf_token_is_refused(console_server: Any) -> None:
    key = console_server.create_key("csrf")["key"]
    client = console_client(console_server, key)
    page = client.get("/console/webhooks")
    reveal = client.post("/console/webhooks/reveal", data={"csrf": csrf_of(page.text)})
    secret_before = csrf_free_secret(reveal.text)
    for data, headers in (({}, {}), ({"csrf": "forged"}, {}), ({}, {"X-CSRF-Token": "forged"})):
        refused = client.post("/console/webhooks/rotate", data=data, headers=headers)
        assert refused.status_code == 403
        assert "security token" in refused.text
    token = csrf_of(page.text)
    assert (
        csrf_free_secret(client.post("/console/webhooks/reveal", data={"csrf": token}).text) == secret_before
    )
    assert client.post("/console/webhooks/rotate", headers={"X-CSRF-Token": token}).status_code == 303
    assert (
        csrf_free_secret(client.post("/console/webhooks/reveal", data={"csrf": token}).text) != secret_before
    )


def csrf_free_secret(html: str) -> str:
    start = html.index("whsec_")
    return html[start : html.index("<", start)]


def test_a_post_from_another_site_is_refused(console_server: Any) -> None:
    """Form posts from another origin: a forged sign-in (login CSRF) and a forged change."""
    key = console_server.create_key("origin")["key"]
    evil = {"Origin": "http://evil.example"}
    client = httpx.Client(base_url=console_server.base_url)
    refused = client.post("/console/signin", data={"key": key}, headers=evil)
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
    signed_in = console_client(console_server, key)
    token = csrf_of(signed_in.get("/console/webhooks").text)
    assert signed_in.post("/console/webhooks/rotate", data={"csrf": token}, headers=evil).status_code == 403
    own = {"Origin": console_server.base_url}
    assert signed_in.post("/console/webhooks/rotate", data={"csrf": token}, headers=own).status_code == 303


def test_a_key_owner_cannot_open_the_operators_pages_nor_the_reverse(console_server: Any) -> None:
    user = console_client(console_server, console_server.create_key("plain")["key"])
    admin = console_client(console_server, console_server.admin_key)
    token = csrf_of(user.get("/console/playground").text)
    for path in ADMIN_PAGES:
        assert user.get(path).status_code == 403, path
        assert admin.get(path).status_code == 200, path
    refused = user.post("/console/keys", data={"csrf": token, "name": "sneaky"})
    assert refused.status_code == 403
    assert all(
        k["name"] != "sneaky" for k in console_server.admin("GET", "/admin/v1/keys").json()["data"]["keys"]
    )
    for path in USER_PAGES:
        assert admin.get(path).status_code == 403, path


def test_no_page_shows_the_key_after_sign_in(console_server: Any) -> None:
    key = console_server.create_key("quiet")["key"]
    client = console_client(console_server, key)
    assert key not in str(client.cookies.jar)
    task_id = submit_in_console(client, "hello")
    token = csrf_of(client.get("/console/playground").text)
    pages = [
        client.get(path)
        for path in (*USER_PAGES, f"/console/tasks/{task_id}", f"/console/playground?task={task_id}")
    ]
    pages.append(client.post("/console/webhooks/reveal", data={"csrf": token}))
    for response in pages:
        assert response.status_code == 200, response.url
        assert key not in response.text, response.url
    admin = console_client(console_server, console_server.admin_key)
    for path in ADMIN_PAGES:
        assert console_server.admin_key not in admin.get(path).text


def test_sign_out_ends_the_session_on_the_server(console_server: Any) -> None:
    client = console_client(console_server, console_server.create_key("leaving")["key"])
    cookie = client.cookies.get("gengate_console")
    assert cookie
    token = csrf_of(client.get("/console/tasks").text)
    out = client.post("/console/signout", data={"csrf": token})
    assert out.status_code == 303
    replay = httpx.Client(base_url=console_server.base_url, cookies={"gengate_console": cookie})
    assert replay.get("/console/tasks").status_code == 303  # to the sign-in page
    assert replay.post("/console/webhooks/rotate", data={"csrf": token}).status_code == 401


def test_session_cookie_and_page_headers(console_server: Any) -> None:
    client = httpx.Client(base_url=console_server.base_url)
    response = client.post("/console/signin", data={"key": console_server.create_key("cookie")["key"]})
    cookie = response.headers["set-cookie"].lower()
    for part in ("httponly", "samesite=strict", "path=/console"):
        assert part in cookie
    assert "secure" not in cookie  # plain HTTP on loopback; set under HTTPS
    page = client.get("/console/playground")
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self';" in policy
    assert "unsafe-inline" not in policy
    assert "<script>" not in page.text  # no inline script at all
    assets = [part.split('"')[0] for part in page.text.split('src="/console/static/')[1:]]
    assert assets
    for asset in assets:
        served = client.get("/console/static/" + asset)
        assert served.status_code == 200
        assert "max-age=31536000" in served.headers["cache-control"]
    assert client.get("/").headers["location"] == "/console"
    assert client.get("/console").headers["location"] == "/console/playground"
    docs = client.get("/docs")
    assert "default-src 'self'" in docs.headers["content-security-policy"]
    assert "https://" not in docs.text


def test_failed_sign_ins_are_rate_limited(tmp_path: Path) -> None:
    """On a server that allows 3 failed sign-ins a minute per address, the 4th try is refused,
    even with the right key."""
    server = harness.start_server(tmp_path, "signin-limit", env={"GENGATE_CONSOLE_SIGNIN_LIMIT": "3/minute"})
    try:
        client = httpx.Client(base_url=server.base_url)
        good = server.create_key("later")["key"]
        for attempt in range(3):
            assert client.post("/console/signin", data={"key": f"wrong-{attempt}"}).status_code == 401
        refused = client.post("/console/signin", data={"key": good})
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert "gengate_console" not in refused.headers.get("set-cookie", "")
    finally:
        server.stop()


def test_a_test_event_is_signed_and_goes_through_the_ssrf_guard(
    console_server: Any, receiver: Receiver
) -> None:
    client = console_client(console_server, console_server.create_key("tester")["key"])
    token = csrf_of(client.get("/console/webhooks").text)
    secret = csrf_free_secret(client.post("/console/webhooks/reveal", data={"csrf": token}).text)
    sent = client.post("/console/webhooks/test", data={"csrf": token, "url": receiver.url})
    assert sent.status_code == 200
    assert "Delivered" in sent.text
    assert "HTTP 200" in sent.text
    (body,) = receiver.bodies
    assert body["type"] == "gengate.test"
    Webhook(secret).verify(receiver.raw[0], receiver.headers[0])
    refused = client.post(
        "/console/webhooks/test", data={"csrf": token, "url": "http://169.254.169.254/latest"}
    )
    assert "Not delivered" in refused.text
    assert "refused" in refused.text
    assert len(receiver.bodies) == 1
