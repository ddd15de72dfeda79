"""A ComfyUI-compatible server for the tests, written from ComfyUI 0.3.64's own `server.py`,
`execution.py`, `main.py` (prompt_worker) and `protocol.py` (commit a125cd84, October 2025).

Faithful where gengate listens: the routes (`POST /prompt` {prompt, client_id, prompt_id} ->
{prompt_id, number, node_errors} or 400 {error, node_errors}; `GET /history/{id}`; `GET /queue`;
`POST /queue {"delete"}`; `POST /interrupt {"prompt_id"}`; `GET /view`; `POST /upload/image`;
`GET /ws?clientId=`), one prompt at a time from a real priority queue, the websocket messages in
ComfyUI's order and shapes (sent to the queuing client id; `status` and interrupts broadcast),
binary preview frames (type 1 with a JPEG, type 3 a node's text), validation errors as
`validate_inputs` words them, and a history entry `{prompt, outputs, status, meta}`.

Nodes: CheckpointLoaderSimple, CLIPTextEncode, EmptyLatentImage, KSampler (one progress message
and one preview per step, `step_s` apart, interruptible), VAEDecode, VAEEncode, LoadImage,
SaveImage (a real PNG: the latent's size, colour from the seed, the prompt in its `prompt` text
chunk as ComfyUI writes it) and PreviewImage (type `temp`). A node whose class is in
`fail_classes` raises; `hold` keeps KSampler after its first step until released; `jobs_api` adds
`POST /api/jobs/{id}/cancel`, as newer servers may have.

Runs on its own event loop in a thread, so sync and async tests (and a `gengate serve` process)
can all reach it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import heapq
import socket
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from comfyui_fake_nodes import image_to_image_workflow, text_to_image_workflow, validate_prompt
from comfyui_fake_run import PromptRunner

__all__ = ["FakeComfy", "image_to_image_workflow", "text_to_image_workflow"]


def _free_socket(port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


@dataclass
class FakeComfy(PromptRunner):
    """One fake ComfyUI server. Start with `start()` (or as a context manager), stop with `stop()`."""

    root: Path
    step_s: float = 0.01
    fail_classes: set[str] = field(default_factory=set)
    jobs_api: bool = False
    #: Listen here (0: a free port).
    port: int = 0
    #: False: `/ws` refuses the upgrade (403), as a proxy that does not pass websockets would.
    websocket_ok: bool = True
    #: Every `POST /prompt` body, and every `(method, path)` served.
    prompts: list[dict[str, Any]] = field(default_factory=list)
    requests: list[tuple[str, str]] = field(default_factory=list)
    #: The most prompts ever waiting at once behind the running one.
    max_pending: int = 0
    url: str = ""

    def __post_init__(self) -> None:
        self.input_dir = self.root / "input"
        self.output_dir = self.root / "output"
        self.input_dir.mkdir(parents=True, exist_ok=True)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.queue: list[tuple[Any, ...]] = []
        self.running: dict[int, tuple[Any, ...]] = {}
        self.history: dict[str, dict[str, Any]] = {}
        self.sockets: dict[str, WebSocket] = {}
        self.client_id: str | None = None
        self.last_node_id: str | None = None
        self.number = 0
        self.task_counter = 0
        self.interrupted = threading.Event()
        self.released = threading.Event()
        self.released.set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._image_counter = 0

    # -- test controls ------------------------------------------------------------------------
    def hold(self) -> None:
        """KSampler stops after its first step (progress sent) until `release()`."""
        self.released.clear()

    def release(self) -> None:
        self.released.set()

    def ended(self, prompt_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The prompt's history entry, once it has one."""
        deadline = time.monotonic() + timeout
        while prompt_id not in self.history:
            assert time.monotonic() < deadline, f"prompt {prompt_id} did not end"
            time.sleep(0.01)
        return self.history[prompt_id]

    def pending_ids(self) -> list[str]:
        return [item[1] for item in sorted(self.queue)]

    def running_ids(self) -> list[str]:
        return [item[1] for item in self.running.values()]

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> FakeComfy:
        sock = _free_socket(self.port)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        config = uvicorn.Config(self.app(), log_level="warning", lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        started = threading.Event()

        def main() -> None:
            async def serve() -> None:
                self._loop = asyncio.get_running_loop()
                self._wake = asyncio.Event()
                worker = asyncio.create_task(self._prompt_worker())
                started.set()
                assert self._server is not None
                try:
                    await self._server.serve(sockets=[sock])
                finally:
                    worker.cancel()

            asyncio.run(serve())

        self._thread = threading.Thread(target=main, name="fake-comfyui", daemon=True)
        self._thread.start()
        started.wait(10)
        deadline = time.monotonic() + 10
        while not self._server.started:
            assert time.monotonic() < deadline, "the fake ComfyUI did not start"
            time.sleep(0.01)
        return self

    def stop(self, *, release: bool = True) -> None:
        """Shut down; `release=False` leaves a held prompt unfinished (a server that dies)."""
        if release:
            self.released.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeComfy:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/prompt", self.post_prompt, methods=["POST"]),
                Route("/prompt", self.get_prompt, methods=["GET"]),
                Route("/queue", self.get_queue, methods=["GET"]),
                Route("/queue", self.post_queue, methods=["POST"]),
                Route("/interrupt", self.post_interrupt, methods=["POST"]),
                Route("/history/{prompt_id}", self.get_history, methods=["GET"]),
                Route("/view", self.view, methods=["GET"]),
                Route("/upload/image", self.upload_image, methods=["POST"]),
                Route("/system_stats", self.system_stats, methods=["GET"]),
                Route("/api/jobs/{prompt_id}/cancel", self.jobs_cancel, methods=["POST"]),
                WebSocketRoute("/ws", self.websocket),
            ]
        )

    # -- messages (server.py: send_json / send_bytes, sid None broadcasts) ----------------------
    async def send(self, event: str, data: dict[str, Any], sid: str | None) -> None:
        message = {"type": event, "data": data}
        targets = (
            list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        )
        for ws in targets:
            with contextlib.suppress(Exception):  # send_socket_catch_exception
                await ws.send_json(message)

    async def send_bytes(self, event: int, data: bytes, sid: str | None) -> None:
        message = struct.pack(">I", event) + data
        targets = (
            list(self.sockets.values()) if sid is None else [self.sockets[sid]] if sid in self.sockets else []
        )
        for ws in targets:
            with contextlib.suppress(Exception):  # send_socket_catch_exception
                await ws.send_bytes(message)

    def queue_info(self) -> dict[str, Any]:
        return {"exec_info": {"queue_remaining": len(self.queue) + len(self.running)}}

    async def queue_updated(self) -> None:
        await self.send("status", {"status": self.queue_info()}, None)

    # -- routes -----------------------------------------------------------------------------------
    async def websocket(self, ws: WebSocket) -> None:
        if not self.websocket_ok:
            await ws.close()  # before accept: an HTTP 403
            return
        await ws.accept()
        sid = ws.query_params.get("clientId", "")
        if sid:
            self.sockets.pop(sid, None)
        else:
            sid = uuid.uuid4().hex
        self.sockets[sid] = ws
        try:
            await self.send("status", {"status": self.queue_info(), "sid": sid}, sid)
            if self.client_id == sid and self.last_node_id is not None:
                await self.send("executing", {"node": self.last_node_id}, sid)
            while True:
                await ws.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if self.sockets.get(sid) is ws:
                self.sockets.pop(sid, None)

    async def post_prompt(self, request: Request) -> Response:
        self.requests.append(("POST", "/prompt"))
        body = await request.json()
        self.prompts.append(body)
        number = self.number
        self.number += 1
        if "prompt" not in body:
            error = {
                "type": "no_prompt",
                "message": "No prompt provided",
                "details": "No prompt provided",
                "extra_info": {},
            }
            return JSONResponse({"error": error, "node_errors": {}}, status_code=400)
        prompt = body["prompt"]
        prompt_id = str(body.get("prompt_id", uuid.uuid4()))
        valid, error, outputs, node_errors = validate_prompt(prompt, self.input_dir)
        extra_data = dict(body.get("extra_data", {}))
        if "client_id" in body:
            extra_data["client_id"] = body["client_id"]
        if not valid:
            return JSONResponse({"error": error, "node_errors": node_errors}, status_code=400)
        heapq.heappush(self.queue, (number, prompt_id, prompt, extra_data, outputs))
        # Waiting behind a running prompt; with none running, the worker takes this one at once.
        self.max_pending = max(self.max_pending, len(self.queue) - (0 if self.running else 1))
        await self.queue_updated()
        assert self._wake is not None
        self._wake.set()
        return JSONResponse({"prompt_id": prompt_id, "number": number, "node_errors": node_errors})

    async def get_prompt(self, _request: Request) -> Response:
        self.requests.append(("GET", "/prompt"))
        return JSONResponse(self.queue_info())

    async def system_stats(self, _request: Request) -> Response:
        return JSONResponse(
            {"system": {"comfyui_version": "0.3.64", "python_version": "3.11"}, "devices": []}
        )

    async def get_queue(self, _request: Request) -> Response:
        self.requests.append(("GET", "/queue"))
        return JSONResponse(
            {
                "queue_running": [list(item) for item in self.running.values()],
                "queue_pending": [list(i) for i in self.queue],
            }
        )

    async def post_queue(self, request: Request) -> Response:
        self.requests.append(("POST", "/queue"))
        body = await request.json()
        if body.get("clear"):
            self.queue = []
        for prompt_id in body.get("delete", []):
            for item in list(self.queue):
                if item[1] == prompt_id:
                    self.queue.remove(item)
                    heapq.heapify(self.queue)
                    await self.queue_updated()
                    break
        return Response(status_code=200)

    async def post_interrupt(self, request: Request) -> Response:
        self.requests.append(("POST", "/interrupt"))
        try:
            body = await request.json()
        except ValueError:
            body = {}
        prompt_id = body.get("prompt_id") if isinstance(body, dict) else None
        if prompt_id:
            if any(item[1] == prompt_id for item in self.running.values()):
                self.interrupted.set()
        else:
            self.interrupted.set()
        return Response(status_code=200)

    async def jobs_cancel(self, request: Request) -> Response:
        prompt_id = request.path_params["prompt_id"]
        self.requests.append(("POST", f"/api/jobs/{prompt_id}/cancel"))
        if not self.jobs_api:
            return Response(
                status_code=405
            )  # an aiohttp server without the route: the static `/` has no POST
        self.queue = [item for item in self.queue if item[1] != prompt_id]
        heapq.heapify(self.queue)
        if any(item[1] == prompt_id for item in self.running.values()):
            self.interrupted.set()
        return JSONResponse({"id": prompt_id, "status": "cancelled"})

    async def get_history(self, request: Request) -> Response:
        self.requests.append(("GET", "/history"))
        prompt_id = request.path_params["prompt_id"]
        if prompt_id in self.history:
            return JSONResponse({prompt_id: copy.deepcopy(self.history[prompt_id])})
        return JSONResponse({})

    async def view(self, request: Request) -> Response:
        self.requests.append(("GET", "/view"))
        query = request.query_params
        filename = query.get("filename", "")
        if not filename or filename[0] == "/" or ".." in filename:
            return Response(status_code=400)
        base = {"output": self.output_dir, "input": self.input_dir}.get(query.get("type", "output"))
        if base is None:
            return Response(status_code=400)
        folder = (base / query.get("subfolder", "")).resolve()
        if not folder.is_relative_to(base.resolve()):
            return Response(status_code=403)
        path = folder / Path(filename).name
        if not path.is_file():
            return Response(status_code=404)
        return FileResponse(path, headers={"Content-Disposition": f'filename="{path.name}"'})

    async def upload_image(self, request: Request) -> Response:
        self.requests.append(("POST", "/upload/image"))
        form = await request.form()
        image = form.get("image")
        if image is None or isinstance(image, str) or not image.filename:
            return Response(status_code=400)
        subfolder = str(form.get("subfolder") or "")
        folder = self.input_dir / subfolder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.filename).write_bytes(await image.read())
        return JSONResponse({"name": image.filename, "subfolder": subfolder, "type": "input"})
