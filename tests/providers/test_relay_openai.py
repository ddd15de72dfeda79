"""The OpenAI-style relay against a loopback server speaking `/v1/images/generations`."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import pytest
from relay_support import FAST, TINY, UPSTREAM_KEY_ENV, relay_model, relaying, serve
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gengate.providers.base import ProviderFailure, RunContext
from gengate.providers.demo import render_png
from gengate.providers.relay.openai import OpenAIOptions, link
from gengate.providers.relay.upstream import Upstream, parse_options

PNG = render_png("openai", 16, 16, 3)
ERRORS = {
    "policy": (400, "content_policy_violation", "Your request was rejected by our safety system."),
    "key": (401, "invalid_api_key", "Incorrect API key provided."),
}


@dataclass
class FakeImages:
    """Answers generations with `reply`: "b64", "url", or an error of ERRORS."""

    reply: str = "b64"
    requests: list[tuple[dict[str, Any], dict[str, str]]] = field(default_factory=list)
    url: str = ""

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/images/generations", self._generate, methods=["POST"]),
                Route("/img/{name}", self._image, methods=["GET"]),
            ]
        )

    async def _generate(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append((body, dict(request.headers)))
        headers = {"x-request-id": f"req_{len(self.requests)}"}
        if self.reply in ERRORS:
            status, code, message = ERRORS[self.reply]
            error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
            return JSONResponse({"error": error}, status, headers=headers)
        count = body.get("n", 1)
        if self.reply == "url":
            items = [{"url": f"{self.url}/img/{i}.png"} for i in range(count)]
        else:
            items = [{"b64_json": base64.b64encode(PNG).decode()} for _ in range(count)]
        return JSONResponse({"created": 1700000000, "data": items}, headers=headers)

    async def _image(self, _request: Request) -> Response:
        return Response(PNG, media_type="image/png")


@pytest.fixture
async def images() -> AsyncIterator[FakeImages]:
    fake = FakeImages()
    async with serve(fake.app()) as url:
        fake.url = url
        yield fake


async def _run(images: FakeImages, tmp_path: Path, task_input: dict[str, Any], **options: Any) -> list[Any]:
    up = Upstream(
        "oai",
        base_url=images.url,
        api_key="sk-test",
        timeout_s=10,
        options=parse_options({**FAST, **options}, OpenAIOptions),
    )
    announced: list[tuple[str, str | None]] = []
    ctx = RunContext(
        task_id="task_local",
        model="pictures",
        mode="text-to-image",
        output_dir=tmp_path,
        on_upstream=lambda task_id, trace_id: announced.append((task_id, trace_id)),
    )
    try:
        outputs = list(await link(up, "gpt-image-1").run(task_input, ctx))
    finally:
        await up.aclose()
    assert announced == [(f"req_{len(images.requests)}", f"req_{len(images.requests)}")]
    return outputs


async def test_a_model_relayed_to_openai_images(
    tmp_path: Path, images: FakeImages, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(UPSTREAM_KEY_ENV, "sk-test")
    provider = {
        "kind": "openai",
        "base_url": images.url,
        "api_key_env": UPSTREAM_KEY_ENV,
        "defaults": {"quality": "low"},
    }
    async with relaying(tmp_path, {"oai": provider}, {"pictures": relay_model("oai:gpt-image-1")}) as gateway:
        data = await gateway.run("pictures", {**TINY, "n": 2})
        assert data["state"] == "success", data
        urls = await gateway.result_urls(data)
        assert [(await gateway.http.get(url)).content for url in urls] == [PNG, PNG]
    [(body, headers)] = images.requests
    assert body == {"model": "gpt-image-1", "quality": "low", "prompt": "a red fox", "n": 2, "size": "16x16"}
    assert headers["authorization"] == "Bearer sk-test"


async def test_url_answers_are_downloaded(tmp_path: Path, images: FakeImages) -> None:
    images.reply = "url"
    outputs = await _run(images, tmp_path, {"prompt": "a fox", "size": "1024x1024"}, response_format="url")
    assert [(output.path.name, output.content_type) for output in outputs] == [("0.png", "image/png")]
    assert outputs[0].path.read_bytes() == PNG
    [(body, _)] = images.requests
    assert body == {"model": "gpt-image-1", "prompt": "a fox", "size": "1024x1024", "response_format": "url"}


@pytest.mark.parametrize(
    ("reply", "fail_code", "transient"),
    [("policy", "CONTENT_VIOLATION", False), ("key", "PROVIDER_ERROR", True)],
)
async def test_errors_are_mapped(
    tmp_path: Path, images: FakeImages, reply: str, fail_code: str, transient: bool
) -> None:
    images.reply = reply
    with pytest.raises(ProviderFailure) as caught:
        await _run(images, tmp_path, {"prompt": "a fox"})
    assert (caught.value.fail_code, caught.value.transient) == (fail_code, transient)
    assert ERRORS[reply][2] in caught.value.message
    assert len(images.requests) == 1


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="response_fromat"):
        parse_options({"response_fromat": "url"}, OpenAIOptions)
    assert isinstance(parse_options({}, OpenAIOptions), msgspec.Struct)
