"""gengate: a self-hosted gateway for asynchronous AI generation tasks.

What a user imports: the SDK clients and their errors. The server is started with
`gengate serve` or built with :class:`gengate.runtime.Gateway`.
"""

from gengate.client import (
    APIError,
    AsyncClient,
    Client,
    GengateError,
    TaskFailedError,
    TaskStatus,
    TaskTimeoutError,
)

__all__ = [
    "APIError",
    "AsyncClient",
    "Client",
    "GengateError",
    "TaskFailedError",
    "TaskStatus",
    "TaskTimeoutError",
]
