"""Helpers of the ComfyUI provider tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from gengate.providers.base import RunContext

BIND = {
    "prompt": "6.inputs.text",
    "negative_prompt": "7.inputs.text",
    "seed": "3.inputs.seed",
    "steps": "3.inputs.steps",
    "cfg": "3.inputs.cfg",
    "width": "5.inputs.width",
    "height": "5.inputs.height",
    "checkpoint": "4.inputs.ckpt_name",
}


@dataclass
class Run:
    """A run's context and what the provider reported through it."""

    ctx: RunContext
    progress: list[int] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)
    upstream: list[str] = field(default_factory=list)


async def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until `check()` holds (the fake runs in another thread)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)
