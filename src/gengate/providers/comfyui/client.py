"""One ComfyUI server's HTTP routes, as ComfyUI's `server.py` defines them (see `events` for its
websocket).

`POST /prompt` queues a graph under our prompt id; `GET /history/{prompt_id}` holds an ended
prompt's status and outputs; `GET /view` serves an output file; `POST /upload/image` takes an input
picture. Cancel is `POST /api/jobs/{id}/cancel` where the server has it, else `POST /queue
{"delete": [...]}` for a queued prompt and `POST /interrupt {"prompt_id"}` for the running one.
Every answer is read through the bounded reader; transport errors become transient failures once,
here.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx

from gengate.domain.files import OutputFile
from gengate.domain.states import FailCode
from gengate.net.bounded import BodyError, send_capped
from gengate.providers.base import ProviderFailure
from gengate.providers.relay.errors import (
    client_fault,
    failure_for_body,
    failure_for_transport,
    provider_fault,
)
from gengate.providers.relay.mirror import save

log = logging.getLogger(__name__)


class ComfyServer:
    """The routes of the ComfyUI server at `url`, over the provider's shared HTTP client."""

    def __init__(self, url: str, http: httpx.AsyncClient, *, max_answer_bytes: int, max_output_bytes: int):
        self.url = url.rstrip("/")
        self.http = http
        self.max_answer_bytes = max_answer_bytes
        self.max_output_bytes = max_output_bytes
        #: Whether the server has `POST /api/jobs/{id}/cancel`; None until a cancel has asked.
        self.jobs_cancel: bool | None = None

    def ws_url(self, client_id: str) -> str:
        base = "ws" + self.url.removeprefix("http")  # http -> ws, https -> wss
        return f"{base}/ws?clientId={client_id}"

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request, its answer read whole (bounded); no answer or too large: a transient failure."""
        request = self.http.build_request(method, self.url + path, **kwargs)
        try:
            return await send_capped(self.http, request, self.max_answer_bytes)
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc
        except BodyError as exc:
            raise failure_for_body(f"the answer to {method} {path}", exc, "max_answer_bytes") from exc

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = await self.request(method, path, **kwargs)
        if not response.is_success:
            raise provider_fault(f"{method} {path} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise provider_fault(f"{method} {path} answered something that is not JSON") from None

    async def queue_prompt(
        self, graph: dict[str, Any], client_id: str, prompt_id: str, bound: set[tuple[str, str]]
    ) -> str:
        """Queue `graph` as `prompt_id`; the id the server took (before 0.3.45 it chose its own).
        A refusal that names a bound input is the client's
        (`INVALID_INPUT`); any other is the server's or the workflow's (a missing model file)."""
        body = {"prompt": graph, "client_id": client_id, "prompt_id": prompt_id}
        response = await self.request("POST", "/prompt", json=body)
        if response.is_success:
            try:
                taken = response.json().get("prompt_id")
            except (ValueError, AttributeError):
                taken = None
            return taken if isinstance(taken, str) and taken else prompt_id
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if response.status_code != 400 or not isinstance(answer, dict):
            raise provider_fault(f"POST /prompt answered HTTP {response.status_code}")
        message, clients = refusal(answer, bound)
        if clients:
            raise client_fault(FailCode.INVALID_INPUT, message)
        raise provider_fault(f"ComfyUI refused the workflow: {message}")

    async def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, or None while it has none (queued, running, unknown)."""
        answer = await self.json("GET", f"/history/{prompt_id}")
        entry = answer.get(prompt_id) if isinstance(answer, dict) else None
        return entry if isinstance(entry, dict) else None

    async def whereabouts(self, prompt_id: str) -> str | None:
        """`running` or `pending` while the prompt is in the server's queue, else None."""
        answer = await self.json("GET", "/queue")
        for state in ("running", "pending"):
            for item in answer.get(f"queue_{state}", []) if isinstance(answer, dict) else []:
                if isinstance(item, list) and len(item) > 1 and item[1] == prompt_id:
                    return state
        return None

    async def upload_image(self, data: bytes, filename: str) -> str:
        """Put a picture in the server's input folder; the name a `LoadImage` node takes."""
        files = {"image": (filename, data, "application/octet-stream")}
        answer = await self.json(
            "POST", "/upload/image", files=files, data={"type": "input", "overwrite": "true"}
        )
        name = answer.get("name") if isinstance(answer, dict) else None
        if not isinstance(name, str) or not name:
            raise provider_fault("POST /upload/image answered without the file's name")
        subfolder = answer.get("subfolder") or ""
        return f"{subfolder}/{name}" if subfolder else name

    async def download(self, item: dict[str, Any], folder: Path, index: int) -> OutputFile:
        """Stream one output file (`{filename, subfolder, type}`) into `folder`, bounded."""
        params = {
            "filename": str(item["filename"]),
            "subfolder": str(item.get("subfolder") or ""),
            "type": str(item.get("type") or "output"),
        }
        try:
            async with self.http.stream("GET", self.url + "/view", params=params) as answer:
                if not answer.is_success:
                    raise provider_fault(
                        f"GET /view of {params['filename']!r} answered HTTP {answer.status_code}"
                    )
                return await save(answer, folder, index, self.max_output_bytes)
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc

    async def cancel(self, prompt_id: str) -> None:
        """Stop the prompt, queued or running; nothing else on the server."""
        if self.jobs_cancel is not False:
            response = await self.request("POST", f"/api/jobs/{prompt_id}/cancel")
            if response.is_success:
                self.jobs_cancel = True
                return
            if response.status_code in (404, 405):
                self.jobs_cancel = False
        # Out of the queue first (a no-op once it runs); then, only if it is the one running, an
        # interrupt: before ComfyUI 0.3.57 `/interrupt` stops whatever runs, whoever queued it.
        await self.request("POST", "/queue", json={"delete": [prompt_id]})
        if await self.whereabouts(prompt_id) == "running":
            await self.request("POST", "/interrupt", json={"prompt_id": prompt_id})


def refusal(answer: dict[str, Any], bound: set[tuple[str, str]]) -> tuple[str, bool]:
    """The words of a 400 from `POST /prompt` (`{error, node_errors}`), and whether an error is
    about a node input the client set (`bound`: node id, input name)."""
    lines: list[str] = []
    clients = False
    node_errors = answer.get("node_errors")
    for node_id, node in (node_errors if isinstance(node_errors, dict) else {}).items():
        if not isinstance(node, dict):
            continue
        for error in node.get("errors") or []:
            if not isinstance(error, dict):
                continue
            extra = error.get("extra_info")
            named = extra.get("input_name") if isinstance(extra, dict) else None
            clients = clients or (str(node_id), str(named)) in bound
            lines.append(f"node {node_id} ({node.get('class_type', '?')}): {_words(error)}")
    if not lines:
        error = answer.get("error")
        lines.append(_words(error) if isinstance(error, dict) else str(error or "invalid prompt"))
    return "; ".join(lines), clients


def _words(error: dict[str, Any]) -> str:
    message, details = str(error.get("message") or "").strip(), str(error.get("details") or "").strip()
    return f"{message}: {details}" if message and details else message or details or "invalid"


def failure_for_execution(data: dict[str, Any]) -> ProviderFailure:
    """An `execution_error`: the node and its exception. Out of memory may pass on another try or
    server; any other error would happen again with the same input."""
    exception_type = str(data.get("exception_type") or "")
    words = (
        f"node {data.get('node_id', '?')} ({data.get('node_type', '?')}) raised {exception_type}: "
        + str(data.get("exception_message") or "").strip()
    )
    if "OutOfMemory" in exception_type:
        return provider_fault(words)
    return ProviderFailure(FailCode.PROVIDER_ERROR, "Upstream provider error: " + words[:480])
