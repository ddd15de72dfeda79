"""The official `openai` client, unmodified but for its base URL, drives a real `gengate serve`:
`images.generate` (url and b64_json, every picture checked), `images.edit` through a relayed
image-to-image model, and the errors it raises. A task past the sync wait is one task (the
client's retries start no other), read through the APIXO and KIE doors."""

from __future__ import annotations

import base64
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import openai
import pytest
from PIL import Image, ImageOps

pytestmark = pytest.mark.e2e

GengateServer = Any
Launcher = Any

EDITOR_KEY_ENV = "OPENAI_E2E_EDITOR_KEY"


def client(server: GengateServer, key: str) -> openai.OpenAI:
    """The client as its users make it: only `base_url` points at gengate."""
    return openai.OpenAI(base_url=server.base_url + "/v1", api_key=key)


def picture(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def png(width: int, height: int) -> bytes:
    image = Image.new("RGB", (width, height), (20, 120, 200))
    image.paste((250, 200, 0), (0, 0, width // 3, height))  # a stripe on the left, to see a mirror
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


# -- an image-to-image upstream: XHuo's run, answering the picture mirrored ---------------------
@dataclass
class MirrorUpstream:
    """`POST /api/v1/run/{model}` mirrors `image_url` (a data URL) and answers its URL."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, bytes] = field(default_factory=dict)
    url: str = ""

    def handler(self) -> type[BaseHTTPRequestHandler]:
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                upstream.runs.append(body)
                header, _, data = body["image_url"].partition(",")
                assert header.startswith("data:image/png;base64")
                mirrored = io.BytesIO()
                ImageOps.mirror(picture(base64.b64decode(data))).save(mirrored, "PNG")
                name = f"/out/{len(upstream.runs)}.png"
                upstream.outputs[name] = mirrored.getvalue()
                answer = {"success": True, "task_id": f"up_{len(upstream.runs)}", "trace_id": "t"}
                self._send(
                    200, "application/json", json.dumps({**answer, "result_urls": [upstream.url + name]})
                )

            def do_GET(self) -> None:
                self._send(200, "image/png", upstream.outputs[self.path])

            def _send(self, status: int, content_type: str, body: str | bytes) -> None:
                data = body.encode() if isinstance(body, str) else body
                self.send_response(status)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


@pytest.fixture(scope="module")
def mirror() -> Iterator[MirrorUpstream]:
    upstream = MirrorUpstream()
    server = ThreadingHTTPServer(("127.0.0.1", 0), upstream.handler())
    upstream.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield upstream
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def editing(start_gengate_module: Launcher, mirror: MirrorUpstream) -> GengateServer:
    """A server with `demo-edit` (image-to-image, relayed to the mirror) and a 2 s sync wait."""
    config = f"""\
[providers.editor]
kind = "xhuo"
base_url = "{mirror.url}"
api_key_env = "{EDITOR_KEY_ENV}"

[models.demo-edit]
providers = ["editor:mirror"]
modes = ["image-to-image"]
max_attempts = 1
"""
    return start_gengate_module(
        "openai-images", config=config, env={"GENGATE_SYNC_WAIT": "2", EDITOR_KEY_ENV: "upstream-key"}
    )


def test_generate_answers_urls_of_pictures_of_the_size_asked(
    gengate_server: GengateServer, api_key: str
) -> None:
    images = client(gengate_server, api_key).images.generate(
        model="demo-image", prompt="a red fox", size="96x64", n=2, quality="high"
    )
    assert images.data is not None
    assert len(images.data) == 2
    assert (images.size, images.output_format) == ("96x64", "png")
    for item in images.data:
        assert item.url is not None
        assert item.b64_json is None
        download = httpx.get(item.url, timeout=15)
        assert download.status_code == 200
        assert picture(download.content).size == (96, 64)


def test_generate_b64_json_carries_the_picture(gengate_server: GengateServer, api_key: str) -> None:
    images = client(gengate_server, api_key).images.generate(
        model="demo-image", prompt="a blue fox", size="40x24", response_format="b64_json"
    )
    assert images.data is not None
    [item] = images.data
    assert item.url is None
    assert item.b64_json is not None
    shown = picture(base64.b64decode(item.b64_json))
    assert (shown.format, shown.size) == ("PNG", (40, 24))


def test_errors_raise_the_client_exceptions(gengate_server: GengateServer, api_key: str) -> None:
    images = client(gengate_server, api_key).images
    with pytest.raises(openai.BadRequestError) as bad_size:
        images.generate(model="demo-image", prompt="a fox", size="huge")
    assert (bad_size.value.param, bad_size.value.code) == ("size", "bad_request")
    with pytest.raises(openai.BadRequestError) as too_many:
        images.generate(model="demo-image", prompt="a fox", n=9)
    assert too_many.value.param == "n"
    with pytest.raises(openai.NotFoundError) as unknown:
        images.generate(model="dall-e-3", prompt="a fox")
    assert (unknown.value.code, unknown.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.AuthenticationError) as wrong_key:
        client(gengate_server, "sk-not-a-gengate-key").images.generate(model="demo-image", prompt="a fox")
    assert wrong_key.value.code == "invalid_token"
    assert wrong_key.value.response.headers["x-trace-id"]


def test_edit_sends_the_upload_to_an_image_to_image_model(
    editing: GengateServer, mirror: MirrorUpstream
) -> None:
    key = editing.create_key("openai-edit")["key"]
    original = png(48, 32)
    images = client(editing, key).images.edit(
        model="demo-edit", image=("fox.png", original, "image/png"), prompt="mirror it"
    )
    assert images.data is not None
    [item] = images.data
    assert item.url is not None
    edited = picture(httpx.get(item.url, timeout=15).content)
    assert edited.tobytes() == ImageOps.mirror(picture(original).convert(edited.mode)).tobytes()
    run = mirror.runs[-1]
    assert run["prompt"] == "mirror it"
    assert base64.b64decode(run["image_url"].partition(",")[2]) == original
    # A model without an image-to-image mode is refused on `model`.
    with pytest.raises(openai.BadRequestError) as no_mode:
        client(editing, key).images.edit(model="demo-image", image=("fox.png", original), prompt="x")
    assert no_mode.value.param == "model"


def test_past_the_sync_wait_one_task_goes_on_readable_elsewhere(editing: GengateServer) -> None:
    """The client retries 5xx twice by default; `x-should-retry: false` keeps it to one task."""
    key = editing.create_key("openai-late")["key"]
    with pytest.raises(openai.InternalServerError) as late:
        client(editing, key).images.generate(
            model="demo-image", prompt="slow fox", size="16x16", extra_body={"duration_ms": 20_000}
        )
    assert late.value.status_code == 504
    task_id = late.value.response.headers["x-gengate-task-id"]
    assert task_id in late.value.message
    listed = editing.http.get("/api/v1/tasks", headers=editing.auth(key)).json()["data"]["tasks"]
    assert [task["taskId"] for task in listed] == [task_id]
    assert editing.status_data(key, "demo-image", task_id)["state"] in ("pending", "processing")
    record = editing.http.get(
        "/api/v1/jobs/recordInfo", params={"taskId": task_id}, headers=editing.auth(key)
    )
    assert record.json()["data"]["state"] == "waiting"
    canceled = editing.http.post(
        "/api/v1/cancelTask/demo-image", params={"taskId": task_id}, headers=editing.auth(key)
    )
    assert canceled.json()["data"]["failCode"] == "CANCELED"
