"""Python SDK for gengate and the APIXO-compatible services it mirrors.

`Client` blocks, `AsyncClient` awaits; both submit tasks, poll them to the end and stream
results to disk, reading `GENGATE_BASE_URL` and `GENGATE_API_KEY` when not given them.
`verify_callback` checks a signed callback on the receiving side. Everything they raise on
purpose is a `GengateError`. The answers are read by :mod:`gengate.wire`, bounded by
:mod:`gengate.net.bounded`. Needs only httpx, stamina and standardwebhooks: the `gengate-client`
distribution (clients/python) installs this package without the server.
"""

from gengate.wire.errors import (
    APIError,
    CallbackVerificationError,
    GengateError,
    ProtocolError,
    TaskFailedError,
    TaskTimeoutError,
)
from gengate.wire.status import TERMINAL_STATES, TaskStatus

from ._async import AsyncClient
from ._callbacks import parse_callback, verify_callback
from ._config import DEFAULT_BASE_URL
from ._sync import Client

__all__ = [
    "DEFAULT_BASE_URL",
    "TERMINAL_STATES",
    "APIError",
    "AsyncClient",
    "CallbackVerificationError",
    "Client",
    "GengateError",
    "ProtocolError",
    "TaskFailedError",
    "TaskStatus",
    "TaskTimeoutError",
    "parse_callback",
    "verify_callback",
]
