"""The KIE jobs relay against a real upstream gengate, following tasks by polling and by the
upstream's callback to the gateway's public URL."""

from __future__ import annotations

from pathlib import Path

from relay_support import TINY, UpstreamServer, relay_model, relay_provider, relaying


async def test_polling_follows_the_task_to_its_results(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"jobs": relay_provider("kie", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("jobs:demo-image")}) as gateway:
        data = await gateway.run("fox", {**TINY, "duration_ms": 300, "n": 2})
        assert data["state"] == "success", data
        urls = await gateway.result_urls(data)
        assert len(urls) == 2
        for url in urls:
            answer = await gateway.http.get(url)
            assert answer.status_code == 200
            assert answer.content.startswith(b"\x89PNG")


async def test_an_upstream_failure_code_is_mapped(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"jobs": relay_provider("kie", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("jobs:demo-image")}) as gateway:
        data = await gateway.run("fox", {**TINY, "fail_code": "INVALID_INPUT"})
        assert (data["state"], data["failCode"]) == ("failed", "INVALID_INPUT"), data
        timed_out = await gateway.run("fox", {**TINY, "fail_code": "TIMEOUT"})
        assert (timed_out["state"], timed_out["failCode"]) == ("failed", "TIMEOUT"), timed_out


async def test_the_upstream_callback_wakes_the_relay(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    """Polling waits a minute here, so only the callback can end the task within the test."""
    providers = {"jobs": relay_provider("kie", upstream.base_url, poll_initial_s=60, poll_max_s=60)}
    models = {"fox": relay_model("jobs:demo-image")}
    async with relaying(tmp_path, providers, models, listen=True) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", {**TINY, "duration_ms": 200}, timeout=30)
        assert data["state"] == "success", data
        upstream_task = await upstream.new_task(before)
        response = upstream.server.http.get(
            f"/api/v1/tasks/{upstream_task['taskId']}/deliveries", headers=upstream.server.auth(upstream.key)
        )
        [delivery] = response.json()["data"]["deliveries"]
        assert delivery["url"].startswith(str(gateway.http.base_url).rstrip("/") + "/hooks/upstream/")
        assert delivery["state"] == "delivered", delivery


async def test_a_hook_token_not_signed_by_the_gateway_is_no_route(tmp_path: Path) -> None:
    async with relaying(tmp_path, {}, {}, listen=True) as gateway:
        response = await gateway.http.post("/hooks/upstream/abc.def", json={"taskId": "x"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "no_api"
