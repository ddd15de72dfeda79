"""The APIXO relay against a real upstream gengate: results copied here, failures mapped,
progress followed, cancel passed on."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from relay_support import FAST, TINY, UpstreamServer, relay_model, relay_provider, relaying

from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.providers.base import RunContext
from gengate.providers.demo import render_png
from gengate.providers.relay.apixo import link
from gengate.providers.relay.upstream import RelayOptions, Upstream, parse_options


async def test_results_are_copied_and_outlive_the_upstream_files(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"up": relay_provider("apixo", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        data = await gateway.run("fox", {**TINY, "seed": 7})
        assert data["state"] == "success", data
        [ours] = await gateway.result_urls(data)

        upstream_task = upstream.tasks(limit=1)[0]
        assert upstream_task["model"] == "demo-image"
        assert upstream_task["state"] == "success"
        [theirs] = json.loads(upstream_task["resultJson"])["resultUrls"]
        expected = render_png("a red fox", 16, 16, 7)
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(theirs)).content == expected
            # The upstream forgets its copy (kept as a file or a row): ours must not depend on it.
            their_files = LocalFileStore(upstream.data_dir / "files", upstream.base_url, UrlSigner(b"any"))
            await their_files.delete(upstream_task["taskId"])
            await their_files.close()
            assert (await client.get(theirs)).status_code == 404

        mine = await gateway.http.get(ours)
        assert mine.status_code == 200
        assert mine.headers["content-type"] == "image/png"
        assert mine.content == expected


async def test_a_client_fault_upstream_ends_the_task_without_trying_the_next_provider(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {
        "up": relay_provider("apixo", upstream.base_url),
        "also": relay_provider("kie", upstream.base_url),
    }
    models = {"fox": relay_model("up:demo-image", "also:demo-image")}
    async with relaying(tmp_path, providers, models) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", {**TINY, "fail_code": "CONTENT_VIOLATION"})
        assert data["state"] == "failed", data
        assert data["failCode"] == "CONTENT_VIOLATION"
        assert "Demo failure requested" in data["failMsg"]
        assert len([t for t in upstream.tasks(limit=50) if t["taskId"] not in before]) == 1


async def test_a_provider_fault_upstream_moves_on_to_the_next_provider(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {
        "up": relay_provider("apixo", upstream.base_url),
        "also": relay_provider("kie", upstream.base_url),
    }
    models = {"fox": relay_model("up:demo-image", "also:demo-image")}
    async with relaying(tmp_path, providers, models) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        data = await gateway.run("fox", {**TINY, "fail_code": "PROVIDER_ERROR"})
        assert data["state"] == "failed", data
        assert data["failCode"] == "PROVIDER_ERROR"
        assert data["failMsg"].startswith("Upstream provider error: ")
        # Both providers were tried: the same upstream got one task in each dialect.
        assert len([t for t in upstream.tasks(limit=50) if t["taskId"] not in before]) == 2


async def test_progress_is_followed_and_the_upstream_ids_are_reported(
    tmp_path: Path, upstream: UpstreamServer
) -> None:
    up = Upstream(
        "up",
        base_url=upstream.base_url,
        api_key=upstream.key,
        timeout_s=10,
        options=parse_options(FAST, RelayOptions),
    )
    progress: list[int] = []
    announced: list[tuple[str, str | None]] = []
    ctx = RunContext(
        task_id="task_local",
        model="fox",
        mode="text-to-image",
        output_dir=tmp_path,
        on_progress=progress.append,
        on_upstream=lambda task_id, trace_id: announced.append((task_id, trace_id)),
    )
    try:
        outputs = await link(up, "demo-image").run({**TINY, "duration_ms": 1000}, ctx)
    finally:
        await up.aclose()
    [output] = outputs
    assert output.content_type == "image/png"
    assert output.path.parent == tmp_path
    assert output.path.read_bytes().startswith(b"\x89PNG")
    [(task_id, trace_id)] = announced
    assert task_id == upstream.tasks(limit=1)[0]["taskId"]
    assert trace_id
    assert progress, "no progress was reported during a second of upstream work"
    assert progress == sorted(progress)
    assert all(0 < value <= 100 for value in progress)


async def test_cancel_is_passed_on_to_the_upstream(
    tmp_path: Path, upstream: UpstreamServer, upstream_key: str
) -> None:
    providers = {"up": relay_provider("apixo", upstream.base_url)}
    async with relaying(tmp_path, providers, {"fox": relay_model("up:demo-image")}) as gateway:
        before = {task["taskId"] for task in upstream.tasks(limit=50)}
        task_id = await gateway.submit("fox", {**TINY, "duration_ms": 60_000})
        upstream_task = await upstream.new_task(before)
        upstream.wait("demo-image", upstream_task["taskId"], until=lambda data: data["state"] == "processing")
        response = await gateway.http.post(
            "/api/v1/cancelTask/fox", params={"taskId": task_id}, headers=gateway.auth()
        )
        assert response.status_code == 200, response.text
        data = await gateway.wait("fox", task_id)
        assert (data["state"], data["failCode"]) == ("failed", "CANCELED")
        theirs = upstream.wait("demo-image", upstream_task["taskId"])
        assert (theirs["state"], theirs["failCode"]) == ("failed", "CANCELED")
