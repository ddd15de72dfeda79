"""Rendering errors in the envelope of the route's dialect (:mod:`gengate.dialects` draws them).

APIXO and admin routes: `{code, message, data: null, error: {code, message}, trace_id}`;
KIE jobs routes say `msg`; XHuo `/api/v1/run` routes carry only `error` and `trace_id`.
The HTTP status always equals `code`.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gengate.api.responses import JSONResponse
from gengate.api.trace import trace_id_of
from gengate.dialects import error_envelope
from gengate.domain.dialect import Dialect
from gengate.domain.errors import ApiError, BadRequest, GatewayError, NoApi
from gengate.observability.context import note_client_gone

log = logging.getLogger(__name__)

#: Replicate's routes: its problem bodies on every error under them.
REPLICATE_PREFIXES = ("/v1/predictions", "/v1/models/", "/v1/webhooks/")


def dialect_for_path(path: str) -> Dialect:
    """The dialect whose envelope a route's errors use: KIE under `/api/v1/jobs/`, XHuo under
    `/api/v1/run/`, Replicate under its `/v1/` paths, fal under `/fal/`, OpenAI Images under
    `/v1/images/`, APIXO everywhere else (admin and console routes included)."""
    if path.startswith("/api/v1/jobs/"):
        return Dialect.KIE
    if path.startswith("/api/v1/run/"):
        return Dialect.XHUO
    if path.startswith(REPLICATE_PREFIXES):
        return Dialect.REPLICATE
    if path.startswith("/fal/"):
        return Dialect.FAL
    if path.startswith("/v1/images/"):
        return Dialect.OPENAI
    return Dialect.APIXO


def render(error: GatewayError, request: Request) -> Response:
    body = error_envelope(dialect_for_path(request.url.path), error, trace_id_of(request.scope))
    return JSONResponse(body, status_code=error.status, headers=response_headers(error))


def response_headers(error: GatewayError) -> dict[str, str]:
    """The error's headers, with `Retry-After` written here from the seconds it carries."""
    if error.retry_after_s is None:
        return error.headers
    return {**error.headers, "Retry-After": str(error.retry_after_s)}


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return render(exc, request)


async def on_http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no route, a method not allowed, a form it cannot parse) in our envelope."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        error = NoApi(f"Method {request.method} is not allowed on {request.url.path}.", status=405)
        allow = (exc.headers or {}).get("Allow")
        if allow:
            error.headers["Allow"] = allow
        return render(error, request)
    if exc.status_code == 404:
        return render(NoApi(f"No route {request.method} {request.url.path}."), request)
    if 400 <= exc.status_code < 500:  # a request Starlette itself refused (an unparsable form)
        return render(BadRequest(str(exc.detail), status=exc.status_code), request)
    return render(ApiError(str(exc.detail)), request)


async def on_client_gone(request: Request, exc: Exception) -> Response:
    """A client that closed its connection before sending its whole body: nothing went wrong
    here, and anyone with a key can do it as often as they like, so it is one INFO line. The
    answer goes nowhere (the server drops it), but the route ends as every route does."""
    assert isinstance(exc, ClientDisconnect)
    trace_id = trace_id_of(request.scope)
    note_client_gone()  # this line is the request's one line
    log.info(
        "client disconnected before sending the whole body (trace_id %s) on %s %s",
        trace_id,
        request.method,
        request.url.path,
    )
    return render(BadRequest("The connection closed before the whole request body arrived."), request)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    trace_id = trace_id_of(request.scope)
    log.error(
        "unexpected error (trace_id %s) on %s %s", trace_id, request.method, request.url.path, exc_info=exc
    )
    return render(ApiError(), request)


EXCEPTION_HANDLERS = {
    GatewayError: on_gateway_error,
    HTTPException: on_http_error,
    ClientDisconnect: on_client_gone,
    Exception: on_unexpected,
}
