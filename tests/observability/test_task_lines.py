"""Every line a worker writes about a task names it and its trace id: the claim, the file save,
the end; the in-process gateway with its real workers and store."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from logcapture import configure_logs

from gengate.runtime import Gateway

__all__ = ["configure_logs"]

TRACE = "client-chosen-trace-0001"


async def test_the_worker_lines_of_a_task_carry_its_trace_id(configure_logs: Any, gateway: Gateway) -> None:
    captured = configure_logs("info", "json")
    _key, secret = await gateway.keys.create("traced")
    transport = httpx.ASGITransport(app=gateway.asgi())
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
        submitted = await http.post(
            "/api/v1/generateTask/demo-echo",
            json={"request_type": "async", "input": {"mode": "echo", "prompt": "hi"}},
            headers={"Authorization": f"Bearer {secret}", "X-Trace-Id": TRACE},
        )
        task_id = submitted.json()["data"]["taskId"]
        task = await gateway.store.get_task(task_id)
        assert task is not None
        assert task.trace_id == TRACE
        await gateway.tasks.wait_until_done(task, 10)
        for _ in range(100):  # the worker writes its last line just after the task ends
            if "ended success" in captured.text():
                break
            await asyncio.sleep(0.05)
    about = [r for r in captured.records() if r.get("task_id") == task_id]
    events = [r["event"] for r in about]
    assert any(e.startswith("claimed task") for e in events), events
    assert any(e.startswith("saved 1 result file") for e in events), events
    assert any(e.endswith("ended success") for e in events), events
    assert all(r["trace_id"] == TRACE for r in about), about
    assert [r["route"] for r in about if r["logger"] == "gengate.access"] == ["/api/v1/generateTask/{model}"]
