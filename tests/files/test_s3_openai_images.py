"""The OpenAI Images door with results on S3: `b64_json` reads the pictures back from the bucket."""

from __future__ import annotations

import base64

import httpx

from gengate.files.s3 import S3FileStore
from gengate.providers.demo import render_png
from gengate.runtime import Gateway
from gengate.settings import Settings


async def test_b64_json_carries_the_pictures_kept_in_the_bucket(
    settings: Settings, bucket: str, s3_endpoint: str
) -> None:
    settings = settings.model_copy(
        update={"files_url": f"s3://{bucket}/results", "s3_endpoint_url": s3_endpoint}
    )
    gateway = Gateway(settings)
    assert isinstance(gateway.files, S3FileStore)
    async with gateway.running():
        _key, api_key = await gateway.keys.create("s3")
        transport = httpx.ASGITransport(app=gateway.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as api:
            response = await api.post(
                "/v1/images/generations",
                json={
                    "model": "demo-image",
                    "prompt": "a bucket",
                    "size": "64x48",
                    "n": 2,
                    "seed": 7,
                    "response_format": "b64_json",
                },
                headers={"Authorization": f"Bearer {api_key}"},
                timeout=60,
            )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert [base64.b64decode(item["b64_json"]) for item in data] == [
        render_png("a bucket", 64, 48, 7 + i) for i in range(2)
    ]
