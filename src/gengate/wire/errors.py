"""Exceptions of the SDK and the wire layer: one base class catches everything the SDK raises."""

from __future__ import annotations

from gengate.wire.status import TaskStatus


class GengateError(Exception):
    """Base of every error the gengate client raises on purpose."""


class APIError(GengateError):
    """The server answered with an error envelope (or something that is not an envelope at all).

    `code` is the machine-readable `error.code` (`invalid_token`, `too_many_requests`, ...),
    `trace_id` the id to quote when asking the operator, `retry_after` the server's hint in seconds.
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        trace_id: str | None = None,
        *,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, trace_id)
        self.status = status
        self.code = code
        self.message = message
        self.trace_id = trace_id
        self.retry_after = retry_after

    def __str__(self) -> str:
        trace = f" (trace_id {self.trace_id})" if self.trace_id else ""
        return f"{self.code}: {self.message}{trace}"

    @property
    def retryable(self) -> bool:
        """Whether the same request may succeed later: rate limits and server-side trouble."""
        return self.status == 429 or self.status >= 500


class ProtocolError(GengateError):
    """A success response did not have the shape the wire format promises."""


class TaskFailedError(GengateError):
    """The task reached `failed`; raised by `generate`, which promises results."""

    def __init__(self, status: TaskStatus) -> None:
        super().__init__(status)
        self.status = status

    def __str__(self) -> str:
        return f"task {self.status.task_id} failed: {self.status.fail_code}: {self.status.fail_msg}"


class TaskTimeoutError(GengateError, TimeoutError):
    """`wait` gave up before the task reached a terminal state; the task itself goes on."""

    def __init__(self, task_id: str, timeout: float, last: TaskStatus | None = None) -> None:
        super().__init__(task_id, timeout, last)
        self.task_id = task_id
        self.timeout = timeout
        self.last = last

    def __str__(self) -> str:
        state = f", last state {self.last.state}" if self.last else ""
        return f"task {self.task_id} not finished after {self.timeout:g} s{state}"


class CallbackVerificationError(GengateError):
    """A request to a callback receiver is not a callback gengate signed with this secret (forged,
    altered, replayed, or with malformed signature headers): answer it 400 and ignore it."""
