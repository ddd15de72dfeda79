"""Starlette's own refusals raised inside a route (an unparsable multipart form raises
`HTTPException(400)`) are the client's error in our envelope, never a 500."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.testclient import TestClient

from gengate.api.errors import EXCEPTION_HANDLERS


async def refuses(request: Request) -> Response:
    raise HTTPException(int(request.path_params["status"]), detail="Could not parse the form.")


def client() -> TestClient:
    app = Starlette(routes=[Route("/api/v1/x/{status}", refuses)], exception_handlers=EXCEPTION_HANDLERS)
    return TestClient(app, raise_server_exceptions=False)


def test_a_4xx_http_exception_keeps_its_status_in_the_envelope() -> None:
    for status in (400, 413, 422):
        answer = client().get(f"/api/v1/x/{status}")
        assert answer.status_code == status
        body = answer.json()
        assert body["code"] == status
        assert body["error"] == {"code": "bad_request", "message": "Could not parse the form."}


def test_a_5xx_http_exception_stays_an_internal_error() -> None:
    answer = client().get("/api/v1/x/500")
    assert answer.status_code == 500
    assert answer.json()["error"]["code"] == "api_error"
