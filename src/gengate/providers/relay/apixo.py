"""Relay to an APIXO-dialect upstream: `generateTask`, then `statusTask` until the task ends.

Wire format as seeds 000-002: submit `{request_type, callback_url?, input}` and get
`data.taskId`; read `data.state` (`pending`, `processing`, `success`, `failed`), `resultJson`
(a JSON string of `resultUrls`), `failCode`/`failMsg`, and `progress` where the upstream gives
it. A canceled task is canceled upstream too (`cancelTask`, as gengate speaks it).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any
from urllib.parse import quote

from gengate.providers.base import Provider, ProviderFailure
from gengate.providers.relay.errors import provider_fault
from gengate.providers.relay.follow import Submitted, TaskRelay
from gengate.providers.relay.upstream import Upstream
from gengate.wire import ProtocolError, TaskStatus, parse_status

log = logging.getLogger(__name__)


def _path(route: str, model: str) -> str:
    return f"/api/v1/{route}/{quote(model, safe='')}"


class ApixoDialect:
    """`generateTask` / `statusTask` / `cancelTask`."""

    async def submit(
        self, up: Upstream, model: str, input: dict[str, Any], callback_url: str | None, key: str
    ) -> Submitted:
        body: dict[str, Any] = {"request_type": "async", "input": input}
        if callback_url is not None:
            body = {"request_type": "callback", "callback_url": callback_url, "input": input}
        data, trace_id = await up.call(
            "POST", _path("generateTask", model), json=body, headers={"Idempotency-Key": key}
        )
        return Submitted(_task_id(data), trace_id)

    async def read(self, up: Upstream, model: str, task_id: str) -> TaskStatus:
        data, _ = await up.call("GET", _path("statusTask", model), params={"taskId": task_id})
        return parse(data)

    async def cancel(self, up: Upstream, model: str, task_id: str) -> None:
        """Best effort: an upstream that cannot cancel just finishes the task unseen."""
        with contextlib.suppress(ProviderFailure):
            await up.call("POST", _path("cancelTask", model), params={"taskId": task_id})
            log.info("canceled upstream task %s on %s", task_id, up.name)


def _task_id(data: dict[str, Any]) -> str:
    task_id = data.get("taskId")
    if not isinstance(task_id, str) or not task_id:
        raise provider_fault("the submit answer has no taskId")
    return task_id


def parse(data: dict[str, Any]) -> TaskStatus:
    """A `statusTask` `data` object, read the way the SDK reads it."""
    try:
        return parse_status(data)
    except ProtocolError as exc:
        raise provider_fault(f"unreadable status: {exc}") from exc


def link(up: Upstream, model: str | None) -> Provider:
    """The provider relaying `model` (None: the gateway's own model id) to this upstream."""
    return TaskRelay(up, ApixoDialect(), model)
