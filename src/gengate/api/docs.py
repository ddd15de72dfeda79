"""`/openapi.json` and the interactive documentation at `/docs`."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from gengate.api.context import ApiContext
from gengate.api.openapi import openapi_document
from gengate.api.responses import JSONResponse

_SWAGGER = """<!doctype html>
<html><head><meta charset="utf-8"><title>gengate API</title>
<link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({url: "/openapi.json", dom_id: "#ui"});</script>
</body></html>"""


def _version() -> str:
    try:
        return version("gengate")
    except PackageNotFoundError:
        return "0.0.0"


class DocsRoutes:
    def __init__(self, ctx: ApiContext) -> None:
        self._document = openapi_document(ctx.catalogue, _version())

    def routes(self) -> list[Route]:
        return [
            Route("/openapi.json", self.openapi, methods=["GET"]),
            Route("/docs", self.docs, methods=["GET"]),
        ]

    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(self._document)

    async def docs(self, _request: Request) -> Response:
        return HTMLResponse(_SWAGGER)
