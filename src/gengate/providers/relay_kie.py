"""Relay to a KIE jobs-dialect upstream: `jobs/createTask`, then `jobs/recordInfo` until it ends.

Wire format as seed 004 and DESIGN.md: create `{model, callBackUrl?, input}` and get
`data.taskId` in a `{code, msg, data}` envelope; the record's `state` is `waiting` (pending or
processing), `success` or `fail` (failed or canceled), with `resultJson` (a JSON string of
`resultUrls`) and `failCode`/`failMsg`, which may be an HTTP-like number ("400"). The dialect
has no cancel: a canceled task is left to end upstream.
"""

from __future__ import annotations

from typing import Any

from gengate.client._models import TaskStatus
from gengate.providers.base import Provider
from gengate.providers.relay_apixo import parse
from gengate.providers.relay_common import Submitted, TaskRelay, Upstream
from gengate.providers.relay_errors import provider_fault

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"

#: KIE states as the APIXO states the shared status reader knows.
_STATES = {"waiting": "processing", "success": "success", "fail": "failed"}


class KieDialect:
    """`jobs/createTask` / `jobs/recordInfo`."""

    async def submit(
        self, up: Upstream, model: str, input: dict[str, Any], callback_url: str | None, key: str
    ) -> Submitted:
        body: dict[str, Any] = {"model": model, "input": input}
        if callback_url is not None:
            body = {"model": model, "callBackUrl": callback_url, "input": input}
        data, trace_id = await up.call("POST", CREATE_PATH, json=body, headers={"Idempotency-Key": key})
        task_id = data.get("taskId")
        if not isinstance(task_id, str) or not task_id:
            raise provider_fault("the createTask answer has no taskId")
        return Submitted(task_id, trace_id)

    async def read(self, up: Upstream, model: str, task_id: str) -> TaskStatus:
        data, _ = await up.call("GET", RECORD_PATH, params={"taskId": task_id})
        state = data.get("state")
        # An unknown state is read as still running: a new upstream state must not end the task.
        return parse({**data, "state": _STATES.get(state, "processing") if isinstance(state, str) else state})

    async def cancel(self, up: Upstream, model: str, task_id: str) -> None:
        """KIE jobs have no cancel route."""


def link(up: Upstream, model: str | None) -> Provider:
    """The provider relaying `model` (None: the gateway's own model id) to this upstream."""
    return TaskRelay(up, KieDialect(), model)
