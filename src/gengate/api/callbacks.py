"""Callbacks as clients see them: the body each dialect posts, and the delivery routes."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gengate.api import kie, xhuo
from gengate.api.apixo import status_data
from gengate.api.context import ApiContext
from gengate.api.responses import success
from gengate.domain.deliveries import Delivery
from gengate.domain.task import Task


def callback_body(task: Task, ctx: ApiContext) -> bytes:
    """What the task's callback posts, in the dialect it was created in: for APIXO exactly its
    status response, for KIE its recordInfo response, for XHuo seed 003's callback envelope."""
    if task.dialect == "kie":
        return kie.record_body(task, ctx)
    if task.dialect == "xhuo":
        return xhuo.callback_body(task, ctx)
    return orjson.dumps({"code": 200, "message": "success", "data": status_data(task, ctx)})


def delivery_view(delivery: Delivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "url": delivery.url,
        "state": delivery.state.value,
        "attempts": [
            {
                "attempt": a.attempt,
                "startedAt": a.started_at,
                "statusCode": a.status_code,
                "latencyMs": a.latency_ms,
                "error": a.error,
            }
            for a in delivery.history
        ],
        "nextAttemptAt": delivery.next_attempt_at,
        "createdAt": delivery.created_at,
        "completedAt": delivery.completed_at,
    }


class CallbackRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/tasks/{task_id}/deliveries", self.deliveries, methods=["GET"]),
            Route("/api/v1/tasks/{task_id}/redeliver", self.redeliver, methods=["POST"]),
        ]

    async def deliveries(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        task, deliveries = await self.ctx.tasks.deliveries(key, request.path_params["task_id"])
        return success({"taskId": task.id, "deliveries": [delivery_view(d) for d in deliveries]})

    async def redeliver(self, request: Request) -> Response:
        """Send the task's latest callback again (same `webhook-id`, fresh schedule)."""
        key = await self.ctx.authenticate(request.scope)
        task, latest = await self.ctx.tasks.redeliver(key, request.path_params["task_id"])
        return success({"taskId": task.id, "deliveryId": latest.id, "state": "pending"})
