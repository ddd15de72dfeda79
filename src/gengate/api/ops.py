"""Operations routes: health, and the signed downloads of local result files."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from gengate.api.responses import JSONResponse
from gengate.domain.clock import now_ms
from gengate.files.local import LocalFileStore
from gengate.metrics import Metrics


async def healthz(_request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class MetricsRoute:
    """`/metrics` in the Prometheus text format."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def endpoint(self, _request: Request) -> Response:
        return Response(self.metrics.render(), media_type=CONTENT_TYPE_LATEST)


class FileRoutes:
    """`/files/{task_id}/{name}`: served only when results live on the local disk."""

    def __init__(self, store: LocalFileStore) -> None:
        self.store = store

    def routes(self) -> list[Route]:
        return [Route("/files/{task_id}/{name}", self.download, methods=["GET", "HEAD"])]

    async def download(self, request: Request) -> Response:
        path, content_type = self.store.resolve(
            request.path_params["task_id"],
            request.path_params["name"],
            request.query_params.get("expires"),
            request.query_params.get("signature"),
            now_ms(),
        )
        return FileResponse(path, media_type=content_type, headers={"Cache-Control": "private, max-age=3600"})
