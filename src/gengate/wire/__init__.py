"""The public sans-IO wire layer: how an APIXO-style answer is read, shared by the SDK
(:mod:`gengate.client`), the relays to hosted services and the callback sender.

Nothing here sends a request or knows the server: it ships in the client-only `gengate-client`
distribution too. `TaskStatus` is one status reading; `APIError` an error answer (with the
server's `Retry-After` in seconds); `ProtocolError` an answer of the wrong shape. The SDK's own
errors (`TaskFailedError`, ...) share their base, `GengateError`, in :mod:`gengate.wire.errors`.
"""

from gengate.wire.errors import APIError, GengateError, ProtocolError
from gengate.wire.parse import (
    error_from_response,
    parse_result_urls,
    parse_retry_after,
    parse_status,
    parse_task_id,
    unwrap,
)
from gengate.wire.status import TERMINAL_STATES, TaskStatus

__all__ = [
    "TERMINAL_STATES",
    "APIError",
    "GengateError",
    "ProtocolError",
    "TaskStatus",
    "error_from_response",
    "parse_result_urls",
    "parse_retry_after",
    "parse_status",
    "parse_task_id",
    "unwrap",
]
