"""The HTTP calls gengate makes to one cog server, and what their answers mean.

A cog server (`python -m cog.server.http`, coglet) has no `GET /predictions/{id}` and forgets a
prediction once it ends: a `PUT` of an ended id runs it again. So the result is never polled:
each run is one `PUT /predictions/{id}` whose answer is held open until the prediction ends and
carries its output, logs and status (closing it early cancels the prediction on the server). The
webhook (when the gateway has a public URL) only brings the logs while the run goes on.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import httpx

from gengate.domain.states import FailCode
from gengate.net.bounded import ACCEPT_ENCODING, BodyError, send_capped
from gengate.observability.context import trace_headers
from gengate.providers.base import ProviderFailure
from gengate.providers.relay.errors import (
    client_fault,
    failure_for_body,
    failure_for_transport,
    provider_fault,
    send_or_fail,
)

#: The webhook events that bring what the held answer does not: the run has begun, its logs.
WEBHOOK_EVENTS = ("start", "logs")


class Health(enum.StrEnum):
    """`status` of `GET /health-check`, plus UNREACHABLE when no answer came."""

    READY = "READY"
    BUSY = "BUSY"
    STARTING = "STARTING"
    SETUP_FAILED = "SETUP_FAILED"
    DEFUNCT = "DEFUNCT"
    UNHEALTHY = "UNHEALTHY"
    UNKNOWN = "UNKNOWN"
    UNREACHABLE = "UNREACHABLE"


@dataclasses.dataclass(frozen=True, slots=True)
class HealthReport:
    """One health check. Fields: `status`, `detail` (why it is unusable: the end of the setup log
    or the connection error; empty when usable)."""

    status: Health
    detail: str = ""


class Refused(enum.Enum):
    """The server took no prediction: all its slots are busy (409) or it is still setting up (503)."""

    BUSY = 409
    STARTING = 503


class ServerLost(Exception):
    """The server went away while a prediction ran on it (the connection broke)."""


class CogClient:
    """One cog server. `http` is the provider's shared client; this one adds the base URL."""

    def __init__(
        self,
        url: str,
        http: httpx.AsyncClient,
        *,
        timeout_s: float,
        max_answer_bytes: int,
        health_timeout_s: float = 5.0,
    ) -> None:
        self.url = url.rstrip("/")
        self.http = http
        self.timeout_s = timeout_s
        self.health_timeout_s = health_timeout_s
        self.max_answer_bytes = max_answer_bytes

    async def predict(
        self, prediction_id: str, input: dict[str, Any], webhook: str | None
    ) -> dict[str, Any] | Refused:
        """Run one prediction and wait for its end: the final prediction object, or why it was refused.

        Raises :class:`ServerLost` when the connection breaks during the run, a client fault
        (INVALID_INPUT) for a 422, a provider fault for any other unexpected answer.
        """
        body: dict[str, Any] = {"id": prediction_id, "input": input}
        if webhook is not None:
            body |= {"webhook": webhook, "webhook_events_filter": list(WEBHOOK_EVENTS)}
        # Connecting and sending are bounded; the answer may take as long as the model runs.
        timeout = httpx.Timeout(self.timeout_s, read=None)
        request = self.http.build_request(
            "PUT", f"{self.url}/predictions/{prediction_id}", json=body, headers=_headers(), timeout=timeout
        )
        try:
            response = await send_capped(self.http, request, self.max_answer_bytes)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise failure_for_transport(exc) from exc
        except httpx.TransportError as exc:
            raise ServerLost(f"{type(exc).__name__}: {exc}") from exc
        except BodyError as exc:
            raise failure_for_body("the prediction's answer", exc, "max_answer_bytes") from exc
        if response.status_code in (409, 503):
            return Refused(response.status_code)
        if response.status_code == 422:
            raise client_fault(FailCode.INVALID_INPUT, _detail(response))
        if response.status_code not in (200, 201, 202):
            raise provider_fault(
                f"PUT /predictions answered HTTP {response.status_code}: {_detail(response)}"
            )
        prediction = _json_object(response)
        if prediction is None or not isinstance(prediction.get("status"), str):
            raise provider_fault("PUT /predictions answered without a prediction")
        return prediction

    async def cancel(self, prediction_id: str) -> None:
        """Ask the server to stop a prediction; one it does not know (ended already) is fine."""
        response = await self._get_or_post("POST", f"/predictions/{prediction_id}/cancel")
        if response.status_code not in (200, 404):
            raise provider_fault(f"cancel answered HTTP {response.status_code}")

    async def health(self) -> HealthReport:
        """The server's state now; an error of any kind reads UNREACHABLE."""
        try:
            response = await self._get_or_post("GET", "/health-check", self.health_timeout_s)
        except ProviderFailure as failure:
            return HealthReport(Health.UNREACHABLE, failure.message)
        found = _json_object(response) or {}
        try:
            status = Health(str(found.get("status")))
        except ValueError:
            return HealthReport(Health.UNREACHABLE, f"health-check answered HTTP {response.status_code}")
        setup = found.get("setup")
        logs = setup.get("logs") if isinstance(setup, dict) else None
        detail = "" if status in (Health.READY, Health.BUSY, Health.STARTING) else _tail(logs)
        return HealthReport(status, detail)

    async def openapi(self) -> dict[str, Any] | None:
        """The server's OpenAPI document, or None where it publishes none (no `.cog/openapi_schema.json`)."""
        response = await self._get_or_post("GET", "/openapi.json", self.health_timeout_s)
        found = _json_object(response) if response.status_code == 200 else None
        return found if found is not None and isinstance(found.get("components"), dict) else None

    async def _get_or_post(self, method: str, path: str, timeout_s: float | None = None) -> httpx.Response:
        timeout = timeout_s or self.timeout_s
        request = self.http.build_request(method, self.url + path, headers=_headers(), timeout=timeout)
        return await send_or_fail(self.http, request, self.max_answer_bytes)


def _headers() -> dict[str, str]:
    return {"Accept-Encoding": ACCEPT_ENCODING, **trace_headers()}


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        found = response.json()
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _detail(response: httpx.Response) -> str:
    """A refusal's words: FastAPI-style `detail` (a list of `{loc, msg}`), `error`, or the text."""
    found = _json_object(response) or {}
    detail = found.get("detail")
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = [str(part) for part in item.get("loc", []) if part not in ("body",)]
                parts.append(f"{'.'.join(loc)}: {item.get('msg', '')}".strip(": "))
        return "; ".join(parts)
    if isinstance(found.get("error"), str):
        return str(found["error"])
    return response.text[:300]


def _tail(logs: object, lines: int = 3) -> str:
    text = logs.strip() if isinstance(logs, str) else ""
    return " | ".join(text.splitlines()[-lines:])[:500]
