"""What the relays do when the upstream misbehaves: 429 and 5xx repeated (never other 4xx),
no answer in time, a task that takes too long. A flaky loopback proxy stands in front of the
real upstream gengate and answers the scripted failures first."""

from __future__ import annotations

from pathlib import Path

from relay_support import TINY, FlakyProxy, UpstreamServer, relay_model, relay_provider, relaying


async def test_429_and_503_are_retried_with_the_same_idempotency_key(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.script += [("generateTask", 429, {"Retry-After": "0"}), ("generateTask", 503, {})]
    proxy.script += [("statusTask", 503, {}), ("statusTask", 502, {})]
    providers = {"up": relay_provider("apixo", proxy.url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", TINY)
        assert data["state"] == "success", data
    submits = [headers for method, path, headers in proxy.seen if "generateTask" in path]
    assert len(submits) == 3
    assert len({headers["idempotency-key"] for headers in submits}) == 1
    assert all(headers["authorization"] == f"Bearer {upstream_key}" for headers in submits)
    assert proxy.count("statusTask") >= 3
    assert len([t for t in upstream.tasks(limit=50) if t["taskId"] not in before]) == 1


async def test_other_4xx_are_never_retried(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.script.append(("generateTask", 400, {}))
    providers = {"up": relay_provider("apixo", proxy.url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        data = await gateway.run("fox", TINY)
    assert (data["state"], data["failCode"]) == ("failed", "INVALID_INPUT"), data
    assert proxy.count("generateTask") == 1


async def test_retries_give_up_as_a_transient_provider_error(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.mode = "down"
    providers = {"up": relay_provider("kie", proxy.url, retry_attempts=3)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        data = await gateway.run("fox", TINY)
    assert (data["state"], data["failCode"]) == ("failed", "PROVIDER_ERROR"), data
    assert "HTTP 503" in data["failMsg"]
    assert proxy.count("createTask") == 3


async def test_an_upstream_that_does_not_answer_in_time_falls_back_to_the_next(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str, proxy: FlakyProxy
) -> None:
    proxy.mode = "hang"
    proxy.hang_s = 1.5
    providers = {
        "slow": relay_provider("apixo", proxy.url, timeout_s=0.3, retry_attempts=1),
        "up": relay_provider("apixo", upstream.base_url),
    }
    models = {
        "fox": relay_model("slow:demo-image", "up:demo-image"),
        "only-slow": relay_model("slow:demo-image"),
    }
    async with relaying(tmp_path, providers, models) as gateway:
        data = await gateway.run("fox", TINY)
        assert data["state"] == "success", data
        alone = await gateway.run("only-slow", TINY)
        assert (alone["state"], alone["failCode"]) == ("failed", "TIMEOUT"), alone


async def test_a_task_past_max_wait_is_a_timeout_and_is_canceled_upstream(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"up": relay_provider("apixo", upstream.base_url, max_wait_s=0.5)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", {**TINY, "duration_ms": 60_000})
        assert (data["state"], data["failCode"]) == ("failed", "TIMEOUT"), data
        upstream_task = await upstream.new_task(before)
        theirs = upstream.wait("demo-image", upstream_task["taskId"])
        assert (theirs["state"], theirs["failCode"]) == ("failed", "CANCELED")


async def test_the_models_own_timeout_cancels_the_upstream_task_too(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"up": relay_provider("apixo", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image", timeout_s=1)}) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", {**TINY, "duration_ms": 60_000})
        assert (data["state"], data["failCode"]) == ("failed", "TIMEOUT"), data
        upstream_task = await upstream.new_task(before)
        theirs = upstream.wait("demo-image", upstream_task["taskId"])
        assert (theirs["state"], theirs["failCode"]) == ("failed", "CANCELED")
