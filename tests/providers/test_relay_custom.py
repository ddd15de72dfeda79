"""A provider of one's own: the example module of docs/providers.md, configured by its import
path, relaying to a loopback service that speaks its made-up API."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from relay_support import TINY, UPSTREAM_KEY_ENV, relay_model, relaying, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gengate.providers.demo import render_png
from gengate.providers.registry import ConfigError, build_providers
from gengate.settings import load_settings

DOC = Path(__file__).parents[2] / "docs" / "providers.md"
PNG = render_png("acme", 16, 16, 1)


def _doc_example() -> str:
    """The Python block that follows 'Say Acme renders images' in the docs."""
    text = DOC.read_text()
    found = re.search(r"Say Acme renders images.*?```python\n(.*?)```", text, re.DOTALL)
    assert found, "the example is gone from docs/providers.md"
    return found.group(1)


@pytest.fixture
def acme_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    package = tmp_path / "modules" / "acme_gengate"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "relay.py").write_text(_doc_example())
    monkeypatch.syspath_prepend(str(package.parent))
    return "acme_gengate.relay"


@pytest.fixture
async def acme() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    requests: list[dict[str, Any]] = []

    async def render(request: Request) -> Response:
        requests.append({"body": await request.json(), "authorization": request.headers.get("authorization")})
        return JSONResponse({"job": "job_1", "images": [f"{base}/out/0.png"]}, headers={"x-trace-id": "tr_1"})

    async def image(_request: Request) -> Response:
        return Response(PNG, media_type="image/png")

    app = Starlette(
        routes=[Route("/v2/render", render, methods=["POST"]), Route("/out/{name}", image, methods=["GET"])]
    )
    async with serve(app) as base:
        yield base, requests


async def test_the_documented_example_relays_a_model(
    tmp_path: Path,
    acme_module: str,
    acme: tuple[str, list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    base, requests = acme
    monkeypatch.setenv(UPSTREAM_KEY_ENV, "acme-key")
    provider = {"kind": acme_module, "base_url": base, "api_key_env": UPSTREAM_KEY_ENV, "quality": "high"}
    async with relaying(tmp_path, {"acme": provider}, {"pictures": relay_model("acme:render-v2")}) as gateway:
        data = await gateway.run("pictures", TINY)
        assert data["state"] == "success", data
        [url] = await gateway.result_urls(data)
        assert (await gateway.http.get(url)).content == PNG
    [request] = requests
    assert request["authorization"] == "Bearer acme-key"
    assert request["body"] == {
        "model": "render-v2",
        "quality": "high",
        "mode": "text-to-image",
        "prompt": "a red fox",
        "width": 16,
        "height": 16,
    }


def test_a_module_that_cannot_be_used_is_named(tmp_path: Path, acme_module: str) -> None:
    for kind, message in [
        ("nowhere_gengate.relay", "cannot import"),
        ("acme_gengate.missing", "cannot import"),
    ]:
        settings = load_settings(data_dir=tmp_path, providers={"x": {"kind": kind, "base_url": "http://x"}})
        with pytest.raises(ConfigError, match=message):
            build_providers(settings)
    settings = load_settings(
        data_dir=tmp_path, providers={"x": {"kind": acme_module, "base_url": "http://x", "qualty": "high"}}
    )
    with pytest.raises(ConfigError, match="qualty"):
        build_providers(settings)
