"""Blocking client: moves bytes with httpx; every wire decision comes from `_protocol` and `_policy`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from time import monotonic, sleep
from types import TracebackType
from typing import Any, Self

import httpx

from gengate.net.bounded import read_prefix, with_body
from gengate.wire.errors import TaskFailedError, TaskTimeoutError
from gengate.wire.parse import error_from_response, parse_status, parse_task_id, unwrap
from gengate.wire.status import TaskStatus

from . import _protocol as proto
from ._config import resolve
from ._policy import PollSchedule, retry_hook, sync_retrier
from ._protocol import Call, RequestType

_CHUNK = 1 << 16


class Client:
    """Talks to a gengate (or APIXO-compatible) gateway; use it as a context manager or `close()` it."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """`base_url` defaults to `$GENGATE_BASE_URL`, else http://127.0.0.1:8000; `api_key` to
        `$GENGATE_API_KEY` (one of them is required)."""
        base_url, api_key = resolve(base_url, api_key)
        self.base_url = base_url
        self._api_key = api_key
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)
        self._retry = sync_retrier()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Release the pooled connections."""
        self._http.close()

    def _once(self, call: Call) -> dict[str, Any]:
        response = self._http.request(
            call.method, call.url, params=call.params, json=call.json, headers=call.headers
        )
        return unwrap(response)

    def _call(self, call: Call) -> dict[str, Any]:
        return self._retry(retry_hook(call), self._once, call)

    def submit(
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
        return parse_task_id(self._call(call))

    def account(self) -> dict[str, Any]:
        """The key's own record: credits, limits, and `webhook_secret` for checking callbacks."""
        return self._call(proto.account_call(self._api_key))

    def status(self, model: str, task_id: str) -> TaskStatus:
        """Read the task's current state once."""
        return parse_status(self._call(proto.status_call(self._api_key, model, task_id)))

    def wait(
        self,
        model: str,
        task_id: str,
        *,
        timeout: float = 300.0,
        on_update: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Poll until the task is terminal (failed included), calling `on_update` after every poll."""
        schedule = PollSchedule(timeout, monotonic())
        while True:
            status = self.status(model, task_id)
            if on_update is not None:
                on_update(status)
            if status.is_terminal:
                return status
            delay = schedule.next_delay(monotonic())
            if delay is None:
                raise TaskTimeoutError(task_id, timeout, status)
            sleep(delay)

    def generate(
        self,
        model: str,
        input: dict[str, Any],
        *,
        timeout: float = 300.0,
        on_update: Callable[[TaskStatus], None] | None = None,
    ) -> TaskStatus:
        """Submit and wait; a failed task raises `TaskFailedError`, so a return always has results."""
        task_id = self.submit(model, input)
        status = self.wait(model, task_id, timeout=timeout, on_update=on_update)
        if not status.succeeded:
            raise TaskFailedError(status)
        return status

    def download(self, url: str, dest: Path) -> Path:
        """Stream a result to `dest` (a file, or a folder to put it in) and return the file's path."""
        call = proto.download_call(self._api_key, self.base_url, url)
        target = proto.download_destination(url, dest)
        return self._retry(retry_hook(call), self._download_once, call, target)

    def _download_once(self, call: Call, target: Path) -> Path:
        part = proto.partial_path(target)
        with self._http.stream(
            call.method, call.url, headers=call.headers, follow_redirects=True
        ) as response:
            if not response.is_success:  # only its head: a CDN's error page may be a gzip bomb
                head = read_prefix(response, proto.ERROR_BODY_MAX, scan=proto.ERROR_BODY_MAX)
                raise error_from_response(with_body(response, bytes(head.data)))
            target.parent.mkdir(parents=True, exist_ok=True)
            with part.open("wb") as file:
                for chunk in response.iter_bytes(_CHUNK):
                    file.write(chunk)
        part.replace(target)
        return target
