"""The console in a real headless Chromium against a real `gengate serve`: a key's owner runs
a task and sees its image, cancels a running task, watches a callback's deliveries and delivers
it again; the operator creates a key, tops it up and disables it (and the key's next API call
is refused); both sign out. Every page may talk to the server's own origin only and must log no
error. The pages the README shows are captured on the way."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_support import Guarded, Receiver, screenshot, sign_in

pytestmark = pytest.mark.e2e


def run_in_playground(page: Any, prompt: str, **fields: str) -> str:
    """Fill the demo-image form and run it; returns the task id the page then shows."""
    page.goto("/console/playground?model=demo-image")
    page.get_by_label("Prompt").fill(prompt)
    page.get_by_label("Width").fill(fields.pop("width", "96"))
    page.get_by_label("Height").fill(fields.pop("height", "96"))
    for label, value in fields.items():
        page.get_by_label(label, exact=True).fill(value)
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*/console/playground\?task=task_.*"))
    return page.url.split("task=", 1)[1]


def test_playground_runs_a_task_and_shows_its_image(
    guarded_page: Guarded, console_server: Any, tmp_path: Path
) -> None:
    page = guarded_page.page
    key = console_server.create_key("playground")["key"]
    sign_in(page, key)
    task_id = run_in_playground(page, "A beautiful sunset over mountains", width="256", height="256")
    image = page.locator("#result img")
    image.wait_for(state="visible")
    assert page.locator("#live-state").inner_text() == "success"
    assert page.evaluate("(img) => img.naturalWidth", image.element_handle()) == 256
    assert "curl -X POST" in page.locator("#snippet-curl").inner_text()
    assert key not in page.content()
    screenshot(page, "playground", tmp_path)
    page.get_by_role("link", name="Tasks").click()
    page.locator(f"a[href='/console/tasks/{task_id}']").wait_for()
    # Tasks made elsewhere (the API) appear in the open list by themselves.
    made = [console_server.submit_ok(key, "demo-echo", {"prompt": p}) for p in ("a lighthouse", "a fox")]
    for other in made:
        page.locator(f"a[href='/console/tasks/{other}']").wait_for()
    screenshot(page, "tasks", tmp_path)
    page.get_by_role("link", name="Usage").click()
    assert page.locator("svg.chart rect").count() >= 1
    screenshot(page, "usage", tmp_path)


def test_cancel_a_running_task(guarded_page: Guarded, console_server: Any) -> None:
    page = guarded_page.page
    sign_in(page, console_server.create_key("cancel")["key"])
    task_id = run_in_playground(page, "slow", **{"Duration ms": "60000"})
    page.locator("#live-state", has_text="processing").wait_for()
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url(f"**/console/tasks/{task_id}")
    assert page.locator("#task-state").inner_text() == "canceled"
    assert "CANCELED" in page.locator(".facts").inner_text()


def test_callback_deliveries_and_deliver_again(
    guarded_page: Guarded, console_server: Any, receiver: Receiver, tmp_path: Path
) -> None:
    page = guarded_page.page
    sign_in(page, console_server.create_key("hooks")["key"])
    page.goto("/console/playground?model=demo-image")
    page.get_by_label("Prompt").fill("callback")
    page.get_by_label("Width").fill("128")
    page.get_by_label("Height").fill("128")
    page.get_by_label("Callback URL (optional)").fill(receiver.url)
    page.get_by_role("button", name="Run").click()
    page.wait_for_url(re.compile(r".*task=task_.*"))
    task_id = page.url.split("task=", 1)[1]
    page.goto(f"/console/tasks/{task_id}")
    page.locator(".delivery-state", has_text="delivered").wait_for()
    assert page.locator("tr.attempt").count() == 1
    assert "200" in page.locator("tr.attempt").first.inner_text()
    page.get_by_role("button", name="Deliver again").click()
    page.locator("tr.attempt").nth(1).wait_for()  # the live section refreshes until it is done
    page.locator(".delivery-state", has_text="delivered").wait_for()
    screenshot(page, "task", tmp_path)
    assert len(receiver.bodies) == 2
    assert receiver.bodies[0]["data"]["taskId"] == task_id
    assert receiver.headers[0]["webhook-id"] == receiver.headers[1]["webhook-id"]


def test_operator_creates_tops_up_and_disables_a_key(
    guarded_page: Guarded, console_server: Any, tmp_path: Path
) -> None:
    page = guarded_page.page
    sign_in(page, console_server.admin_key)
    page.get_by_label("Name", exact=True).fill("from the console")
    page.get_by_label("Credits", exact=True).fill("5")
    page.get_by_role("button", name="Create key").click()
    secret = page.locator("#new-key").inner_text().strip()
    assert secret
    api = httpx.Client(base_url=console_server.base_url, headers={"Authorization": f"Bearer {secret}"})
    assert api.get("/api/v1/account").json()["data"]["credits"] == 5
    page.get_by_role("link", name="Manage this key").click()
    page.get_by_label("Add credits").fill("10")
    page.get_by_role("button", name="Top up").click()
    assert page.locator("#key-credits").inner_text() == "15"
    assert api.get("/api/v1/account").json()["data"]["credits"] == 15
    page.get_by_role("link", name="Keys").click()
    page.get_by_label("Search by name, id or prefix").fill("from the console")
    page.get_by_role("button", name="Search").click()
    page.wait_for_url("**/console/keys?q=from+the+console")
    screenshot(page, "keys", tmp_path)
    page.get_by_role("link", name="from the console").click()
    page.get_by_role("button", name="Disable").click()
    assert page.locator("#key-status").inner_text() == "disabled"
    refused = api.get("/api/v1/account")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "disabled"
    api.close()
    busy = console_server.create_key("busy")["key"]
    running = console_server.submit_ok(busy, "demo-echo", {"duration_ms": 60_000})
    console_server.wait_task(busy, "demo-echo", running, until=lambda data: data["state"] == "processing")
    page.get_by_role("link", name="Health").click()
    assert page.locator("#store-state").inner_text() == "reachable"
    assert page.locator("td", has_text="1").count() >= 1  # the worker running it
    screenshot(page, "health", tmp_path)
    console_server.http.post(
        "/api/v1/cancelTask/demo-echo", params={"taskId": running}, headers=console_server.auth(busy)
    )
    page.get_by_role("link", name="Models").click()
    page.locator("th", has_text="demo-image").wait_for()


def test_sign_out_ends_the_session(guarded_page: Guarded, console_server: Any) -> None:
    page = guarded_page.page
    sign_in(page, console_server.create_key("bye")["key"])
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/console/signin")
    page.goto("/console/tasks")
    page.wait_for_url("**/console/signin?next=/console/tasks")


def test_docs_explorer_renders_from_packaged_assets(guarded_page: Guarded) -> None:
    page = guarded_page.page
    page.goto("/docs")
    page.locator(".swagger-ui .info .title").wait_for()
    assert "gengate" in page.locator(".swagger-ui .info .title").inner_text()
    page.locator(".opblock").first.wait_for()
