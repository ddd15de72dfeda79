"""An ASGI HTTP request read whole, as the tests' ASGI receivers (behind hypercorn) keep it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Seen:
    """One request as the app saw it: on which connection (the client's port), and what came."""

    http_version: str
    client_port: int
    path: str
    headers: dict[str, str]
    body: bytes


async def read_request(scope: dict[str, Any], receive: Callable[..., Any]) -> Seen:
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = {name.decode(): value.decode() for name, value in scope["headers"]}
    return Seen(scope["http_version"], scope["client"][1], scope["path"], headers, body)
