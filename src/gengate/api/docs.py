"""`/openapi.json` and the interactive documentation at `/docs`.

Swagger UI ships inside the package (`docs_assets/`, vendored from npm `swagger-ui-dist`), so
`/docs` works offline; its page allows scripts from this origin only. Swagger UI sets inline
styles on its elements, so styles (not scripts) may be inline on this one page.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Mount

from gengate.api.assets import CachedAssets
from gengate.api.context import ApiContext
from gengate.api.openapi import openapi_document
from gengate.api.responses import JSONResponse
from gengate.api.routing import RouteGroup, route

ASSETS_PATH = "/docs/assets"
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
)


def _assets_dir() -> Path:
    return Path(str(resources.files("gengate.api") / "docs_assets"))


def _asset(name: str) -> str:
    digest = hashlib.sha256((_assets_dir() / name).read_bytes()).hexdigest()[:12]
    return f"{ASSETS_PATH}/{name}?v={digest}"


def _page() -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>gengate API</title>
<link rel="stylesheet" href="{_asset("swagger-ui.css")}"></head>
<body><div id="ui"></div>
<script src="{_asset("swagger-ui-bundle.js")}"></script>
<script src="{_asset("docs-init.js")}"></script>
</body></html>"""


def _version() -> str:
    try:
        return version("gengate")
    except PackageNotFoundError:
        return "0.0.0"


class DocsRoutes(RouteGroup):
    def __init__(self, ctx: ApiContext) -> None:
        self._document = openapi_document(ctx.catalogue, _version())
        self._html = _page()

    def routes(self) -> list[BaseRoute]:
        return [*super().routes(), Mount(ASSETS_PATH, app=CachedAssets(_assets_dir()))]

    @route("/openapi.json", "GET")
    async def openapi(self, _request: Request) -> Response:
        return JSONResponse(self._document)

    @route("/docs", "GET")
    async def docs(self, _request: Request) -> Response:
        headers = {
            "Content-Security-Policy": DOCS_CSP,
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-cache",
        }
        return HTMLResponse(self._html, headers=headers)
