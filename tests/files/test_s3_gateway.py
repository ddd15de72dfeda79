"""A gateway with `files_url=s3://...`: results land in the bucket and statusTask links to it."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING

import httpx

from gengate.files.s3 import S3FileStore
from gengate.providers.demo import render_png
from gengate.runtime import Gateway
from gengate.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

PROMPT = {"mode": "text-to-image", "prompt": "a bucket", "width": 64, "height": 48, "n": 2, "seed": 7}


async def test_demo_image_results_download_from_the_bucket(
    settings: Settings, bucket: str, s3_endpoint: str, s3_client: S3Client
) -> None:
    settings = settings.model_copy(
        update={"files_url": f"s3://{bucket}/results", "s3_endpoint_url": s3_endpoint}
    )
    gateway = Gateway(settings)
    assert isinstance(gateway.files, S3FileStore)
    async with gateway.running():
        _key, api_key = await gateway.keys.create("s3")
        headers = {"Authorization": f"Bearer {api_key}"}
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as api:
            submit = await api.post(
                "/api/v1/generateTask/demo-image", json={"input": PROMPT}, headers=headers
            )
            task_id = submit.json()["data"]["taskId"]
            for _ in range(600):
                status = await api.get(f"/api/v1/statusTask/demo-image?taskId={task_id}", headers=headers)
                data = status.json()["data"]
                if data["state"] in {"success", "failed"}:
                    break
                await asyncio.sleep(0.05)
            assert data["state"] == "success", data
            urls = json.loads(data["resultJson"])["resultUrls"]
            # No `/files/` route: the bucket serves the results itself.
            assert (await api.get(f"/files/{task_id}/0.png")).status_code == 404

    assert len(urls) == 2
    async with httpx.AsyncClient() as http:
        for i, url in enumerate(urls):
            assert url.startswith(f"{s3_endpoint}/{bucket}/results/{task_id}/{i}.png?")
            response = await http.get(url)
            assert response.status_code == 200
            assert response.headers["content-type"] == "image/png"
            assert response.content == render_png("a bucket", 64, 48, 7 + i)
    stored = s3_client.list_objects_v2(Bucket=bucket)["Contents"]
    assert sorted(item["Key"] for item in stored) == [
        f"results/{task_id}/0.png",
        f"results/{task_id}/1.png",
    ]
    staging = settings.data_dir / "staging"
    assert not staging.exists() or not list(staging.iterdir()), "no staging folder is left"
