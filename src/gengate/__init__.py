"""gengate: a self-hosted gateway for asynchronous AI generation tasks.

What a user imports: the SDK clients, their errors and the callback check. The server is started
with `gengate serve` or built with :class:`gengate.runtime.Gateway`. This file ships in both the
`gengate` and the `gengate-client` distributions, so it may import nothing but the client.
"""

from gengate.client import (
    APIError,
    AsyncClient,
    CallbackVerificationError,
    Client,
    GengateError,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
    verify_callback,
)

__all__ = [
    "APIError",
    "AsyncClient",
    "CallbackVerificationError",
    "Client",
    "GengateError",
    "TaskFailedError",
    "TaskStatus",
    "TaskTimeoutError",
    "verify_callback",
]
