"""Asyncio client: the twin of `Client`, sharing all wire logic through `_protocol` and `_policy`."""

from __future__ import annotations

from asyncio import sleep
from collections.abc import Callable
from pathlib import Path
from time import monotonic
from types import TracebackType
from typing import Any, Self

import anyio
import httpx

from gengate.net.bounded import aread_prefix, with_body
from gengate.wire.errors import TaskFailedError, TaskTimeoutError
from gengate.wire.parse import error_from_response, parse_status, parse_task_id, unwrap
from gengate.wire.status import TaskStatus

from . import _protocol as proto
from ._config import resolve
from ._policy import PollSchedule, async_retrier, retry_hook
from ._protocol import Call, RequestType

_CHUNK = 1 << 16


class AsyncClient:
    """Talks to a gengate (or APIXO-compatible) gateway from async code; `async with` or `await close()`."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`base_url` defaults to `$GENGATE_BASE_URL`, else http://127.0.0.1:8000; `api_key` to
        `$GENGATE_API_KEY` (one of them is required)."""
        base_url, api_key = resolve(base_url, api_key)
        self.base_url = base_url
        self._api_key = api_key
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)
        self._retry = async_retrier()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Release the pooled connections."""
        await self._http.aclose()

    async def _once(self, call: Call) -> dict[str, Any]:
        response = await self._http.request(
            call.method, call.url, params=call.params, json=call.json, headers=call.headers
        )
        return unwrap(response)

    async def _call(self, call: Call) -> dict[str, Any]:
        return await self._retry(retry_hook(call), self._once, call)

    async def submit(
        self,
        model: str,
        input: dict[str, Any],
        *,
        request_type: RequestType = "async",
        idempotency_key: str | None = None,
        callback_url: str | None = None,
    ) -> str:
        """Create a task and return its id; retried only when `idempotency_key` makes that safe.

        With `callback_url`, gengate also POSTs the final status there, signed (`verify_callback`).
        """
        call = proto.submit_call(
            self._api_key,
            model,
            input,
            request_type=request_type,
            idempotency_key=idempotency_key,
            callback_url=callback_url,
        )
        return parse_task_id(await self._call(call))

    async def account(self) -> dict[str, Any]:
        """The key's own record: credits, limits, and `webhook_secret` for checking callbacks."""
        return await self._call(proto.account_call(self._api_key))

    async def status(self, model: str, task_id: str) -> TaskStatus:
        """Read the task's current state once."""
        return parse_status(await self._call(proto.status_call(self._api_key, model, task_id)))

    async def wait(
        self,
        model: str,
        task_id: str,
        *,
        # A deadline, not a cancel scope: on expiry we raise with the last status seen.
        timeout: float = 300.0,  # noqa: ASYNC109
        on_update: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Poll until the task is terminal (failed included), calling `on_update` after every poll."""
        schedule = PollSchedule(timeout, monotonic())
        while True:
            status = await self.status(model, task_id)
            if on_update is not None:
                on_update(status)
            if status.is_terminal:
                return status
            delay = schedule.next_delay(monotonic())
            if delay is None:
                raise TaskTimeoutError(task_id, timeout, status)
            await sleep(delay)

    async def generate(
        self,
        model: str,
        input: dict[str, Any],
        *,
        timeout: float = 300.0,  # noqa: ASYNC109
        on_update: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Submit and wait; a failed task raises `TaskFailedError`, so a return always has results."""
        task_id = await self.submit(model, input)
        status = await self.wait(model, task_id, timeout=timeout, on_update=on_update)
        if not status.succeeded:
            raise TaskFailedError(status)
        return status

    async def download(self, url: str, dest: Path) -> Path:
        """Stream a result to `dest` (a file, or a folder to put it in) and return the file's path."""
        call = proto.download_call(self._api_key, self.base_url, url)
        target = await anyio.to_thread.run_sync(proto.download_destination, url, dest)
        return await self._retry(retry_hook(call), self._download_once, call, target)

    async def _download_once(self, call: Call, target: Path) -> Path:
        part = anyio.Path(proto.partial_path(target))
        async with self._http.stream(
            call.method, call.url, headers=call.headers, follow_redirects=True
        ) as response:
            if not response.is_success:  # only its head: a CDN's error page may be a gzip bomb
                head = await aread_prefix(response, proto.ERROR_BODY_MAX, scan=proto.ERROR_BODY_MAX)
                raise error_from_response(with_body(response, bytes(head.data)))
            await part.parent.mkdir(parents=True, exist_ok=True)
            async with await anyio.open_file(part, "wb") as file:
                async for chunk in response.aiter_bytes(_CHUNK):
                    await file.write(chunk)
        await part.replace(target)
        return target
