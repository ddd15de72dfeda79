"""Upstream errors as gengate `failCode`s, translated once, here.

Two kinds of trouble come back from an upstream: a refused request (an HTTP error, or an
envelope whose `code` is not 200) and a task that ran and failed (`failCode`/`failMsg`, or
XHuo's `error` naming the task). Either way the question is whose fault it is: the client's
(bad input, content violation: the task ends, no other provider would do better) or not
(credentials, rate limits, outages, timeouts: `transient`, so the fallback chain moves on and
the worker may try again later).
"""

from __future__ import annotations

import re

import httpx

from gengate.domain.states import FailCode
from gengate.net.bounded import BodyError, BodyTooLarge, send_capped
from gengate.providers.base import ProviderFailure
from gengate.wire import APIError

_MESSAGE_LIMIT = 500
_CONTENT = re.compile(r"content[ _-]?polic|violat|moderat|nsfw|unsafe content|safety system", re.IGNORECASE)

#: Request error codes (seed 003's table and OpenAI's) that are the client's fault.
_CLIENT_CODES: dict[str, str] = {
    "bad_request": FailCode.INVALID_INPUT,
    "invalid_request_error": FailCode.INVALID_INPUT,
    "payload_too_large": FailCode.INVALID_INPUT,
    "forbidden": FailCode.CONTENT_VIOLATION,
    "content_policy_violation": FailCode.CONTENT_VIOLATION,
    "moderation_blocked": FailCode.CONTENT_VIOLATION,
}
#: Codes about our standing with the upstream (credentials, balance, limits): never the client's,
#: whatever HTTP status carries them (seed 003 sends `no_token` as a 400).
_PROVIDER_CODES = frozenset(
    {
        "no_token",
        "invalid_token",
        "token_expired",
        "token_mismatched",
        "disabled",
        "used_up",
        "too_many_requests",
        "invalid_api_key",
        "insufficient_quota",
        "rate_limit_exceeded",
        "billing_hard_limit_reached",
    }
)
#: HTTP statuses that are the client's fault when the code says nothing more.
_CLIENT_STATUSES: dict[int, str] = {
    400: FailCode.INVALID_INPUT,
    413: FailCode.INVALID_INPUT,
    422: FailCode.INVALID_INPUT,
    451: FailCode.CONTENT_VIOLATION,
}


def _clip(message: str | None, default: str) -> str:
    text = (message or "").strip() or default
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


def client_fault(fail_code: str, message: str | None) -> ProviderFailure:
    """The task ends: the input is at fault, and the upstream's words say how."""
    return ProviderFailure(fail_code, _clip(message, f"The upstream refused the input ({fail_code})."))


def provider_fault(message: str | None, fail_code: str = FailCode.PROVIDER_ERROR) -> ProviderFailure:
    """Not the client's fault: worth the next provider, or another attempt later."""
    return ProviderFailure(
        fail_code, "Upstream provider error: " + _clip(message, "no details given."), transient=True
    )


def failure_for_request(error: APIError) -> ProviderFailure:
    """A refused request: 400-like codes and moderation are the client's, the rest is not."""
    code = error.code.lower()
    detail = f"{error.message} (HTTP {error.status}, {error.code})"
    if code in _PROVIDER_CODES:
        return provider_fault(detail)
    fail_code = _CLIENT_CODES.get(code)
    if fail_code is None and error.status in (400, 403, 451) and _CONTENT.search(error.message):
        fail_code = FailCode.CONTENT_VIOLATION
    if fail_code is None:
        fail_code = _CLIENT_STATUSES.get(error.status)
    if fail_code is not None:
        return client_fault(fail_code, error.message)
    if error.status == 504 or code == "timeout":
        return provider_fault(detail, FailCode.TIMEOUT)
    return provider_fault(detail)


def failure_for_task(fail_code: str | None, fail_msg: str | None) -> ProviderFailure:
    """An upstream task that failed: its `failCode`, in whichever form the dialect writes it."""
    code = (fail_code or "").strip()
    if code in (FailCode.CONTENT_VIOLATION, FailCode.INVALID_INPUT):
        return client_fault(code, fail_msg)
    if code == FailCode.TIMEOUT:
        return provider_fault(fail_msg, FailCode.TIMEOUT)
    if code.isdigit():  # KIE-style: an HTTP-like number
        return failure_for_request(APIError(int(code), f"http_{code}", fail_msg or ""))
    if code.islower() and code:  # XHuo-style: seed 003's error codes
        return failure_for_request(APIError(500, code, fail_msg or ""))
    return provider_fault(fail_msg if not code else f"{fail_msg or 'failed'} ({code})")


def failure_for_transport(error: httpx.TransportError) -> ProviderFailure:
    """No answer at all: the upstream is down, unreachable or too slow."""
    if isinstance(error, httpx.TimeoutException):
        return provider_fault(f"no answer in time ({type(error).__name__})", FailCode.TIMEOUT)
    return provider_fault(f"unreachable ({type(error).__name__}: {error})")


def failure_for_body(what: str, error: BodyError, option: str) -> ProviderFailure:
    """A body the relay would not read whole: over the provider's bound `option`, or encoded in
    a way it does not decode. `what` names it ("the answer to GET /x", "a result")."""
    if isinstance(error, BodyTooLarge):
        return provider_fault(f"{what} is {error} (the provider's `{option}`)")
    return provider_fault(f"{what} could not be decoded: {error}")


async def send_or_fail(client: httpx.AsyncClient, request: httpx.Request, limit: int) -> httpx.Response:
    """`request`'s answer, read whole up to `limit` decoded bytes (option `max_answer_bytes`); no
    answer, or one too large, is a transient failure."""
    try:
        return await send_capped(client, request, limit)
    except httpx.TransportError as exc:
        raise failure_for_transport(exc) from exc
    except BodyError as exc:
        what = f"the answer to {request.method} {request.url.path}"
        raise failure_for_body(what, exc, "max_answer_bytes") from exc
