"""The gateway's error tree: one exception per `error.code` of DESIGN.md's table.

Routes raise these; one handler in :mod:`gengate.api.errors` renders them in the
route's dialect. The HTTP status always equals the envelope's `code`.

    GatewayError
     ├── BadRequest            400 bad_request
     ├── NoToken               401 no_token
     ├── InvalidToken          401 invalid_token
     ├── TokenExpired          401 token_expired
     ├── TokenMismatched       401 token_mismatched
     ├── Disabled              403 disabled
     ├── UsedUp                403 used_up
     ├── Forbidden             403 forbidden
     ├── NoApi                 404 no_api (405 for a known path with another method)
     ├── ModelNotFound         404 model_not_found
     ├── TaskNotFound          404 task_not_found
     ├── KeyNotFound           404 key_not_found (admin API)
     ├── Conflict              409 conflict
     ├── PayloadTooLarge       413 payload_too_large
     ├── TooManyRequests       429 too_many_requests
     ├── ApiError              500 api_error
     ├── Unavailable           503 unavailable
     └── Timeout               504 timeout
"""

from __future__ import annotations

from typing import ClassVar


class GatewayError(Exception):
    """An error a client sees, with the HTTP status and the machine-readable code."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "api_error"
    default_message: ClassVar[str] = "Internal error."

    def __init__(
        self,
        message: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, object] | None = None,
        status: int | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.headers = headers or {}
        #: Seconds a client should wait before trying again; the HTTP edge writes `Retry-After`.
        self.retry_after_s = retry_after_s
        #: Fields some dialects add beside `error` (XHuo's 504 carries `task_id`).
        self.extra = extra or {}
        if status is not None:
            self.status = status  # type: ignore[misc]
        super().__init__(self.message)


class BadRequest(GatewayError):
    status, code, default_message = 400, "bad_request", "Malformed request."


class NoToken(GatewayError):
    status, code = 401, "no_token"
    default_message = "Missing Authorization header: send `Authorization: Bearer <key>`."


class InvalidToken(GatewayError):
    status, code, default_message = 401, "invalid_token", "The specified token is invalid or wrong."


class TokenExpired(GatewayError):
    status, code, default_message = 401, "token_expired", "The specified token has expired."


class TokenMismatched(GatewayError):
    status, code, default_message = 401, "token_mismatched", "The token is not allowed to use this model."


class Disabled(GatewayError):
    status, code, default_message = 403, "disabled", "The specified token is disabled."


class UsedUp(GatewayError):
    status, code, default_message = 403, "used_up", "Not enough credits for this task."


class Forbidden(GatewayError):
    status, code, default_message = 403, "forbidden", "The input was rejected by content moderation."


class NoApi(GatewayError):
    status, code, default_message = 404, "no_api", "No such route."


class ModelNotFound(GatewayError):
    status, code, default_message = 404, "model_not_found", "No such model."


class TaskNotFound(GatewayError):
    status, code, default_message = 404, "task_not_found", "No such task."


class KeyNotFound(GatewayError):
    status, code, default_message = 404, "key_not_found", "No such key."


class Conflict(GatewayError):
    status, code, default_message = 409, "conflict", "The Idempotency-Key was used with another request."


class PayloadTooLarge(GatewayError):
    status, code, default_message = 413, "payload_too_large", "The request body is too large."


class TooManyRequests(GatewayError):
    status, code, default_message = 429, "too_many_requests", "Rate limit exceeded."


class ApiError(GatewayError):
    status, code, default_message = 500, "api_error", "Internal error; quote the trace_id when reporting it."


class Unavailable(GatewayError):
    status, code, default_message = 503, "unavailable", "The service is temporarily unavailable."


class Timeout(GatewayError):
    status, code, default_message = 504, "timeout", "The task did not finish within the wait limit."
