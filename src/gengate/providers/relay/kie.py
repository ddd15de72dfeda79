"""Relay to a KIE jobs-dialect upstream: `jobs/createTask`, then `jobs/recordInfo` until it ends.

Wire format as seed 004 and DESIGN.md: create `{model, callBackUrl?, input}` and get
`data.taskId` in a `{code, msg, data}` envelope; the record's `state` is `waiting` (pending or
processing), `success` or `fail` (failed or canceled), with `resultJson` (a JSON string of
`resultUrls`) and `failCode`/`failMsg`, which may be an HTTP-like number ("400"). The dialect
has no cancel: a canceled task is left to end upstream. The state names are the KIE dialect's
(:mod:`gengate.dialects.kie`), the same ones gengate's own KIE routes write.
"""

from __future__ import annotations

from typing import Any

from gengate.dialects.kie import STATES_BY_NAME
from gengate.domain.states import TaskState
from gengate.providers.base import Provider
from gengate.providers.relay.apixo import parse
from gengate.providers.relay.errors import provider_fault
from gengate.providers.relay.follow import Submitted, TaskRelay
from gengate.providers.relay.upstream import Upstream
from gengate.wire import TaskStatus

CREATE_PATH = "/api/v1/jobs/createTask"
RECORD_PATH = "/api/v1/jobs/recordInfo"


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
        if isinstance(state, str):
            state = STATES_BY_NAME.get(state, TaskState.PROCESSING).value
        return parse({**data, "state": state})

    async def cancel(self, up: Upstream, model: str, task_id: str) -> None:
        """KIE jobs have no cancel route."""


def link(up: Upstream, model: str | None) -> Provider:
    """The provider relaying `model` (None: the gateway's own model id) to this upstream."""
    return TaskRelay(up, KieDialect(), model)
