"""How the fake ComfyUI (`comfyui_fake`) runs prompts, after ComfyUI's `main.prompt_worker` and
`execution.PromptExecutor`: one at a time from the queue, messages to the queuing client id
(interrupts broadcast when it has none), the history entry written before `executing` with
`node: null`."""

from __future__ import annotations

import asyncio
import heapq
import struct
import threading
import time
from pathlib import Path
from typing import Any

from comfyui_fake_nodes import preview_jpeg, save_image, text_frame


class _Interrupted(Exception):
    """comfy.model_management.InterruptProcessingException."""


class _NodeFailed(Exception):
    pass


class PromptRunner:
    """The prompt worker of a `FakeComfy`: the state it reads and writes is the server's, and so
    are `send`, `send_bytes` and `queue_updated`."""

    queue: list[tuple[Any, ...]]
    running: dict[int, tuple[Any, ...]]
    history: dict[str, dict[str, Any]]
    client_id: str | None
    last_node_id: str | None
    task_counter: int
    step_s: float
    fail_classes: set[str]
    interrupted: threading.Event
    released: threading.Event
    input_dir: Path
    output_dir: Path
    _wake: asyncio.Event | None
    _image_counter: int

    async def _prompt_worker(self) -> None:
        assert self._wake is not None
        while True:
            while not self.queue:
                self._wake.clear()
                await self._wake.wait()
            item = heapq.heappop(self.queue)
            item_id = self.task_counter
            self.task_counter += 1
            self.running[item_id] = item
            await self.queue_updated()
            success, messages, outputs = await self._execute(item)
            del self.running[item_id]
            number, prompt_id, prompt, extra_data, outputs_to_execute = item
            self.history[prompt_id] = {
                "prompt": [number, prompt_id, prompt, extra_data, outputs_to_execute],
                "outputs": outputs,
                "status": {
                    "status_str": "success" if success else "error",
                    "completed": success,
                    "messages": messages,
                },
                "meta": {
                    node: {"node_id": node, "display_node": node, "parent_node": None, "real_node_id": node}
                    for node in outputs
                },
            }
            await self.queue_updated()
            if self.client_id is not None:
                await self.send("executing", {"node": None, "prompt_id": prompt_id}, self.client_id)

    async def _execute(self, item: tuple[Any, ...]) -> tuple[bool, list[Any], dict[str, Any]]:
        _number, prompt_id, prompt, extra_data, outputs_to_execute = item
        self.interrupted.clear()
        self.client_id = extra_data.get("client_id")
        messages: list[Any] = []

        async def add_message(event: str, data: dict[str, Any], broadcast: bool) -> None:
            data = {**data, "timestamp": int(time.time() * 1000)}
            messages.append([event, data])
            if self.client_id is not None or broadcast:
                await self.send(event, data, self.client_id)  # None: every socket

        await add_message("execution_start", {"prompt_id": prompt_id}, broadcast=False)
        await add_message("execution_cached", {"nodes": [], "prompt_id": prompt_id}, broadcast=False)
        executed: list[str] = []
        ui: dict[str, Any] = {}
        for node_id in self._order(prompt, outputs_to_execute):
            node = prompt[node_id]
            self.last_node_id = node_id
            await self.send(
                "executing",
                {"node": node_id, "display_node": node_id, "prompt_id": prompt_id},
                self.client_id,
            )
            try:
                output = await self._run_node(prompt_id, prompt, node_id, node)
            except _Interrupted:
                data = {
                    "prompt_id": prompt_id,
                    "node_id": node_id,
                    "node_type": node["class_type"],
                    "executed": executed,
                }
                await add_message("execution_interrupted", data, broadcast=True)
                self.last_node_id = None
                return False, messages, ui
            except _NodeFailed as exc:
                await add_message(
                    "execution_error",
                    {
                        "prompt_id": prompt_id,
                        "node_id": node_id,
                        "node_type": node["class_type"],
                        "executed": executed,
                        "exception_message": str(exc),
                        "exception_type": "RuntimeError",
                        "traceback": ['  File "execution.py", line 496, in execute\n'],
                        "current_inputs": {},
                        "current_outputs": [],
                    },
                    broadcast=False,
                )
                self.last_node_id = None
                return False, messages, ui
            executed.append(node_id)
            if output is not None:
                ui[node_id] = output
                await self.send(
                    "executed",
                    {"node": node_id, "display_node": node_id, "output": output, "prompt_id": prompt_id},
                    self.client_id,
                )
        await add_message("execution_success", {"prompt_id": prompt_id}, broadcast=False)
        self.last_node_id = None
        return True, messages, ui

    def _order(self, prompt: dict[str, Any], outputs: list[str]) -> list[str]:
        order: list[str] = []

        def visit(node_id: str) -> None:
            if node_id in order:
                return
            for value in prompt[node_id].get("inputs", {}).values():
                if isinstance(value, list) and len(value) == 2:
                    visit(str(value[0]))
            order.append(node_id)

        for node_id in outputs:
            visit(node_id)
        return order

    async def _run_node(
        self, prompt_id: str, prompt: dict[str, Any], node_id: str, node: dict[str, Any]
    ) -> Any:
        class_type, inputs = node["class_type"], node["inputs"]
        if class_type in self.fail_classes:
            raise _NodeFailed(f"{class_type} failed as the test asked")
        if class_type == "KSampler":
            steps = int(inputs["steps"])
            for step in range(1, steps + 1):
                await asyncio.sleep(self.step_s)
                if self.interrupted.is_set():
                    raise _Interrupted
                progress = {"value": step, "max": steps, "prompt_id": prompt_id, "node": node_id}
                await self.send("progress", progress, self.client_id)
                await self.send_bytes(1, struct.pack(">I", 1) + preview_jpeg(), self.client_id)
                while not self.released.is_set() and not self.interrupted.is_set():
                    await asyncio.sleep(0.01)
            await self.send_bytes(3, text_frame(node_id, f"sampled {steps} steps"), self.client_id)
            return None
        if class_type in ("SaveImage", "PreviewImage"):
            self._image_counter += 1
            folders = (self.input_dir, self.output_dir)
            return {"images": [save_image(prompt, class_type, inputs, folders, self._image_counter)]}
        return None
