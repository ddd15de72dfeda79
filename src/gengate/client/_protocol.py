"""Sans-IO core of the client: builds the requests it sends, never sends anything.

`Client` and `AsyncClient` only move bytes; every decision about the requests they make lives
here and every reading of an answer in :mod:`gengate.wire`, so both stay thin and cannot drift
apart (the same split httpx makes between its clients and transports).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Final, Literal
from urllib.parse import quote, unquote

import httpx

RequestType = Literal["async", "sync"]

API_PREFIX: Final = "/api/v1"
_REQUEST_TYPES: Final = frozenset({"async", "sync"})
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True, slots=True)
class Call:
    """One HTTP request to make, plus whether repeating it is harmless (which decides retries)."""

    method: str
    url: str
    params: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    idempotent: bool = True


def _auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


def _model_path(route: str, model: str) -> str:
    # Quote the model so an odd id can never escape its path segment.
    return f"{API_PREFIX}/{route}/{quote(model, safe='')}"


def submit_call(
    api_key: str,
    model: str,
    input: dict[str, Any],
    *,
    request_type: RequestType = "async",
    idempotency_key: str | None = None,
    callback_url: str | None = None,
) -> Call:
    """`POST generateTask`: only repeatable when an idempotency key makes a duplicate harmless.

    A `callback_url` makes it a `callback` task: gengate POSTs the final status there, signed.
    """
    if request_type not in _REQUEST_TYPES:
        raise ValueError(f"request_type must be 'async' or 'sync', not {request_type!r}")
    body: dict[str, Any] = {"request_type": request_type}
    if callback_url is not None:
        if request_type == "sync":
            raise ValueError("a sync submit waits for the result itself: it takes no callback_url")
        body = {"request_type": "callback", "callback_url": callback_url}
    headers = _auth(api_key)
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    return Call(
        "POST",
        _model_path("generateTask", model),
        json={**body, "input": input},
        headers=headers,
        idempotent=idempotency_key is not None,
    )


def status_call(api_key: str, model: str, task_id: str) -> Call:
    """`GET statusTask`: a point read, always safe to repeat."""
    return Call("GET", _model_path("statusTask", model), params={"taskId": task_id}, headers=_auth(api_key))


def account_call(api_key: str) -> Call:
    """`GET /api/v1/account`: the key's own view, with its webhook secret."""
    return Call("GET", f"{API_PREFIX}/account", headers=_auth(api_key))


def download_call(api_key: str, base_url: str, url: str) -> Call:
    """`GET` a result URL; the key goes only to the gateway itself, never to a third-party CDN."""
    base = httpx.URL(base_url)
    target = base.join(url)
    same_origin = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
    return Call("GET", str(target), headers=_auth(api_key) if same_origin else {})


def download_destination(url: str, dest: Path) -> Path:
    """Where `download` writes: `dest` itself, or a file named after the URL inside a folder `dest`."""
    if not dest.is_dir():
        return dest
    name = _SAFE_NAME.sub("_", unquote(PurePosixPath(httpx.URL(url).path).name)).lstrip(".")
    return dest / (name or "download")


#: The most of a download's error answer read, for its message (a CDN's error page is anyone's).
ERROR_BODY_MAX: Final = 64 << 10


def partial_path(target: Path) -> Path:
    """A sibling to stream into, renamed at the end so a cut download never looks complete."""
    return target.with_name(target.name + ".part")
