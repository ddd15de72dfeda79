"""Python SDK for gengate and the APIXO-compatible services it mirrors.

`Client` blocks, `AsyncClient` awaits; both submit tasks, poll them to the end and stream
results to disk. Everything they raise on purpose is a `GengateError`.
"""

from ._async import AsyncClient
from ._errors import APIError, GengateError, ProtocolError, TaskFailedError, TaskTimeoutError
from ._models import TERMINAL_STATES, TaskStatus
from ._sync import Client

__all__ = [
    "TERMINAL_STATES",
    "APIError",
    "AsyncClient",
    "Client",
    "GengateError",
    "ProtocolError",
    "TaskFailedError",
    "TaskStatus",
    "TaskTimeoutError",
]
