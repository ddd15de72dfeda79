"""Operations routes: health, readiness, metrics, and the signed downloads of local result files."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from gengate.api.disk_space import SETTING as DISK_SETTING
from gengate.api.disk_space import DiskSpace
from gengate.api.openapi_parts import DocSpec, Fragment, errors, ok, operation
from gengate.api.responses import JSONResponse
from gengate.api.routing import RouteGroup, route
from gengate.domain.catalogue import Catalogue
from gengate.domain.clock import now_ms
from gengate.domain.errors import Unavailable
from gengate.files.local import LocalFileStore
from gengate.metrics import Metrics
from gengate.providers.base import Provider
from gengate.providers.fallback import circuit_states, model_circuits
from gengate.providers.server_pool import pool_states
from gengate.store.base import Store
from gengate.store.write_health import WriteHealth

log = logging.getLogger(__name__)

#: Longest `/readyz` waits for the store to answer.
READY_STORE_TIMEOUT_S = 2.0
#: How long after a store write failed for its disk (full, read-only, I/O error) `/readyz` is
#: not ready, unless a write succeeds meanwhile.
READY_WRITE_FAILURE_S = 30.0


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class ReadyRoute:
    """`/readyz`: 200 while the store answers, its writes reach the disk, the data and files
    folders have `min_free_bytes` free, and every model has a provider whose circuit is not
    open; else 503 `unavailable`, saying which check fails. The body names every check, and
    shows the model servers of each pool (cog, ComfyUI) with their state."""

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        providers: Mapping[str, Provider],
        *,
        disk: DiskSpace | None = None,
        writes: WriteHealth | None = None,
    ) -> None:
        self.store = store
        self.catalogue = catalogue
        self.providers = providers
        self.disk = disk
        self.writes = writes

    async def endpoint(self, _request: Request) -> Response:
        store_ok = await self._store_answers()
        blocked = {
            model: sorted(circuits)
            for model, circuits in model_circuits(self.catalogue, self.providers).items()
            if all(state == "open" for state in circuits.values())
        }
        problems = [] if store_ok else ["the store does not answer"]
        report: dict[str, Any] = {"store": "ok" if store_ok else "unreachable"}
        problems += self._check_writes(report)
        problems += self._check_disk(report)
        report["circuits"] = circuit_states(self.providers)
        report["servers"] = {
            provider: [
                {"url": s.url, "state": s.state, "busy": s.busy, "capacity": s.capacity, "reason": s.reason}
                for s in servers
            ]
            for provider, servers in pool_states(self.providers).items()
        }
        if not problems and not blocked:
            return JSONResponse({"status": "ready", **report})
        problems += [f"model {model}: every provider's circuit is open" for model in sorted(blocked)]
        raise Unavailable(
            "Not ready: " + "; ".join(problems) + ".",
            headers={"Retry-After": "5"},
            extra={**report, "unavailableModels": blocked},
        )

    def _check_writes(self, report: dict[str, Any]) -> list[str]:
        """Only the SQLite store's writer sees its writes' storage fail; with another store,
        `unchecked`."""
        if self.writes is None:
            report["writes"] = "unchecked"
            return []
        failing = self.writes.failing(READY_WRITE_FAILURE_S)
        report["writes"] = "ok" if failing is None else "failing"
        if failing is None:
            return []
        age, error = failing
        return [f"a store write failed {age:.0f} s ago ({error}) and none has succeeded since"]

    def _check_disk(self, report: dict[str, Any]) -> list[str]:
        if self.disk is None:
            report["disk"] = "unchecked"
            return []
        report["freeBytes"] = self.disk.free()
        low = self.disk.low()
        report["disk"] = "low" if low else "ok"
        return [
            f"the {name} folder has {free} bytes free, less than {DISK_SETTING} ({self.disk.min_free_bytes})"
            for name, free in low.items()
        ]

    async def _store_answers(self) -> bool:
        try:
            async with asyncio.timeout(READY_STORE_TIMEOUT_S):
                await self.store.get_task("task_readyz")
        except Exception:
            log.warning("readiness: the store does not answer", exc_info=True)
            return False
        return True


class MetricsRoute:
    """`/metrics` in the Prometheus text format; the cluster's queue gauges are read from the
    store first, at most once a second however often it is scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def endpoint(self, _request: Request) -> Response:
        await self.metrics.refresh()
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


class FileRoutes(RouteGroup):
    """`/files/{task_id}/{name}`: served only when results live on the local disk."""

    def __init__(self, store: LocalFileStore) -> None:
        self.store = store

    @route("/files/{task_id}/{name}", "GET", "HEAD")
    async def download(self, request: Request) -> Response:
        found, content_type = await asyncio.to_thread(
            self.store.resolve,
            request.path_params["task_id"],
            request.path_params["name"],
            request.query_params.get("expires"),
            request.query_params.get("signature"),
            now_ms(),
        )
        headers = {"Cache-Control": "private, max-age=3600"}
        if isinstance(found, Path):
            return FileResponse(found, media_type=content_type, headers=headers)
        # A small result kept as a row: its bytes are in hand; HEAD gets the length alone.
        headers["Content-Length"] = str(len(found))
        body = b"" if request.method == "HEAD" else found
        return Response(body, media_type=content_type, headers=headers)


def openapi_files(spec: DocSpec) -> Fragment:
    """The result files of the local file store."""
    parameters = [
        {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}},
        {"name": "expires", "in": "query", "required": True, "schema": {"type": "string"}},
        {"name": "signature", "in": "query", "required": True, "schema": {"type": "string"}},
    ]
    download = operation(
        "Download a result file (signed, expiring URL)",
        {"200": {"description": "The file"}} | errors(403, 404),
        parameters=parameters,
        secured=False,
    )
    return Fragment({"/files/{task_id}/{name}": {"get": download}})


def openapi(spec: DocSpec) -> Fragment:
    """Metrics, liveness and readiness."""
    ready = {
        "type": "object",
        "properties": {
            "status": {"type": "string", "enum": ["ready"]},
            "store": {"type": "string", "enum": ["ok"]},
            "writes": {
                "type": "string",
                "enum": ["ok", "unchecked"],
                "description": "`unchecked` with PostgreSQL: its server's disk is its own.",
            },
            "disk": {"type": "string", "enum": ["ok", "unchecked"]},
            "freeBytes": {
                "type": "object",
                "description": "Free bytes of each folder written to (`data`, `files`).",
                "additionalProperties": {"type": "integer"},
            },
            "circuits": {
                "type": "object",
                "description": "Each upstream provider's circuit breaker.",
                "additionalProperties": {"type": "string", "enum": ["closed", "open", "half_open"]},
            },
            "servers": {
                "type": "object",
                "description": "The model servers of each pool provider (cog, ComfyUI): `down` ones "
                "(unreachable, failed setup, or their breaker open) are skipped, with the `reason`.",
                "additionalProperties": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "url": {"type": "string"},
                            "state": {"type": "string", "enum": ["ready", "busy", "starting", "down"]},
                            "busy": {"type": "integer", "description": "Runs of ours on it now."},
                            "capacity": {"type": "integer", "description": "Runs it takes at once."},
                            "reason": {"type": ["string", "null"]},
                        },
                    },
                },
            },
        },
    }
    paths = {
        "/metrics": {
            "get": operation("Prometheus metrics", {"200": {"description": "Metrics"}}, secured=False)
        },
        "/healthz": {"get": operation("Liveness", {"200": {"description": "Alive"}}, secured=False)},
        "/readyz": {
            "get": operation(
                "Readiness: the store answers and writes, the disk has room, and every "
                "model has a provider to run it",
                ok(ready) | errors(503),
                description="503 `unavailable` (with the checks below and `unavailableModels`) "
                "while the store does not answer, a store write failed for its disk within 30 s and "
                "none has succeeded since, a data or files folder has less than "
                "`GENGATE_MIN_FREE_BYTES` free, or every provider of some model has its circuit "
                "breaker open.",
                secured=False,
            )
        },
    }
    return Fragment(paths)
