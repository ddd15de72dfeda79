"""Callbacks as clients see them: the delivery routes. Bodies: :func:`gengate.dialects.render_callback`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gengate.api.openapi_parts import (
    TASK_PARAM,
    DocSpec,
    Fragment,
    enveloped,
    errors,
    ok_data,
    operation,
    ref,
)
from gengate.api.responses import success
from gengate.api.routing import ApiRoutes, route
from gengate.domain.deliveries import Delivery


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


class CallbackRoutes(ApiRoutes):
    @route("/api/v1/tasks/{task_id}/deliveries", "GET")
    async def deliveries(self, request: Request) -> Response:
        key = await self.ctx.authenticate(request.scope)
        task, deliveries = await self.ctx.tasks.deliveries(key, request.path_params["task_id"])
        return success({"taskId": task.id, "deliveries": [delivery_view(d) for d in deliveries]})

    @route("/api/v1/tasks/{task_id}/redeliver", "POST")
    async def redeliver(self, request: Request) -> Response:
        """Send the task's latest callback again (same `webhook-id`, fresh schedule)."""
        key = await self.ctx.authenticate(request.scope)
        task, latest = await self.ctx.tasks.redeliver(key, request.path_params["task_id"])
        return success({"taskId": task.id, "deliveryId": latest.id, "state": "pending"})


DELIVERY = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "description": "The webhook-id, the same on every attempt."},
        "url": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "delivered", "failed"]},
        "attempts": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "attempt": {"type": "integer"},
                    "startedAt": {"type": "integer"},
                    "statusCode": {"type": ["integer", "null"]},
                    "latencyMs": {"type": ["integer", "null"]},
                    "error": {"type": ["string", "null"]},
                },
            },
        },
        "nextAttemptAt": {"type": ["integer", "null"]},
        "createdAt": {"type": "integer"},
        "completedAt": {"type": ["integer", "null"]},
    },
}


def openapi(spec: DocSpec) -> Fragment:
    """A task's deliveries, and sending its callback again."""
    paths = {
        "/api/v1/tasks/{taskId}/deliveries": {
            "get": operation(
                "Every attempt to deliver the task's callback",
                ok_data(
                    {
                        "taskId": {"type": "string"},
                        "deliveries": {"type": "array", "items": ref("Delivery")},
                    }
                )
                | errors(401, 403, 404),
                parameters=[TASK_PARAM],
            )
        },
        "/api/v1/tasks/{taskId}/redeliver": {
            "post": operation(
                "Send the task's latest callback again (same webhook-id)",
                enveloped({"type": "object"}) | errors(400, 401, 403, 404),
                parameters=[TASK_PARAM],
            )
        },
    }
    return Fragment(paths, {"Delivery": DELIVERY})
