"""One configured upstream service: its options, a pooled HTTP client, requests with retries.

Wire parsing the SDK also does (envelopes, `Retry-After`, error bodies) is :mod:`gengate.wire`,
so the client and the relays read upstreams alike. Following a task is :mod:`.follow`, copying
results :mod:`.mirror`; `Upstream` offers both as methods, the interface a relay module uses.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import httpx
import msgspec
import stamina
from opentelemetry.util.types import Attributes

from gengate.domain.files import OutputFile
from gengate.net.bounded import ACCEPT_ENCODING, BodyError, send_capped
from gengate.observability import tracing
from gengate.observability.context import trace_headers
from gengate.providers.base import RunContext
from gengate.providers.relay import follow as following
from gengate.providers.relay import mirror as mirroring
from gengate.providers.relay.errors import (
    failure_for_body,
    failure_for_request,
    failure_for_transport,
    provider_fault,
)
from gengate.providers.relay.hooks import HookWaiter, UpstreamHooks
from gengate.providers.relay.inputs import RELAY_INPUTS, relay_inputs
from gengate.wire import APIError, ProtocolError, TaskStatus, parse_retry_after, unwrap

if TYPE_CHECKING:
    from gengate.providers.relay.follow import Submitted

log = logging.getLogger(__name__)


class RelayOptions(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Options of every relay kind, beside `base_url` and friends under `[providers.<name>]`.

    Polling follows seed 002's advice (3 s, x1.5, at most 30 s between reads); tests shrink it.
    """

    #: Modes its models may offer (a model's `modes` picks among them).
    modes: list[str] = msgspec.field(default_factory=lambda: list(RELAY_INPUTS))
    poll_initial_s: Annotated[float, msgspec.Meta(gt=0)] = 3.0
    poll_factor: Annotated[float, msgspec.Meta(ge=1)] = 1.5
    poll_max_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: Longest wait for one upstream task before moving on (TIMEOUT); default: the model's timeout.
    max_wait_s: Annotated[float, msgspec.Meta(gt=0)] | None = None
    #: Tries of one request that meets 429, 5xx or no answer; other 4xx are never repeated.
    retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 4
    retry_initial_s: Annotated[float, msgspec.Meta(ge=0)] = 1.0
    retry_max_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0
    #: Ask the upstream for a callback when the gateway has a public URL.
    callbacks: bool = True
    #: The most of one result file copied here (decoded bytes, counted as they arrive).
    max_result_bytes: Annotated[int, msgspec.Meta(gt=0)] = 1 << 30
    #: The most of one JSON answer read into memory (decoded bytes); past it, a provider error.
    max_answer_bytes: Annotated[int, msgspec.Meta(gt=0)] = 16 << 20


OptionsT = TypeVar("OptionsT", bound=RelayOptions)


def parse_options(options: Mapping[str, Any], kind: type[OptionsT]) -> OptionsT:
    """The kind's options from the provider's extra keys; `ValueError` names a bad one.
    Lax: options set through `GENGATE_PROVIDERS__<NAME>__<OPTION>` arrive as strings."""
    try:
        parsed = msgspec.convert(dict(options), kind, strict=False)
        relay_inputs(parsed.modes)
    except msgspec.ValidationError as exc:
        raise ValueError(str(exc)) from None
    return parsed


class _RetryableResponse(Exception):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def retryable(response: httpx.Response) -> bool:
    """Seed 003's guidance: 429 and 5xx may pass; other errors would fail the same way again."""
    return response.status_code == 429 or response.status_code >= 500


class Upstream:
    """One configured upstream service: address, key, options and a pooled HTTP client.

    The key goes only to the upstream's own origin, never to a CDN its result URLs point at.
    """

    def __init__(
        self,
        name: str,
        *,
        base_url: str,
        api_key: str | None,
        timeout_s: float,
        options: RelayOptions,
        hooks: UpstreamHooks | None = None,
    ) -> None:
        self.name = name
        self.options = options
        self.hooks = hooks
        self.inputs: Mapping[str, type[msgspec.Struct]] = relay_inputs(options.modes)
        self.auth = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"), timeout=timeout_s, headers={"Accept-Encoding": ACCEPT_ENCODING}
        )

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- requests ---------------------------------------------------------------------
    def _retrier(self) -> Any:
        """stamina's retry loop with this upstream's schedule: exponential backoff with jitter."""
        o = self.options
        return stamina.retry_context(
            on=self._backoff,
            attempts=o.retry_attempts,
            timeout=None,
            wait_initial=o.retry_initial_s,
            wait_max=o.retry_max_s,
            wait_jitter=o.retry_initial_s,
        )

    def _backoff(self, exc: Exception) -> bool | float:
        """Retry 429/5xx (waiting `Retry-After` plus jitter when given) and lost connections."""
        if isinstance(exc, _RetryableResponse):
            after = parse_retry_after(exc.response.headers.get("Retry-After"))
            if after is None:
                return True
            jitter = random.uniform(0, self.options.retry_initial_s)  # noqa: S311 - jitter, not a secret
            return min(after, self.options.retry_max_s) + jitter
        return isinstance(exc, httpx.TransportError)

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        retry_if: Callable[[httpx.Response], bool] = retryable,
    ) -> httpx.Response:
        """Send with the upstream's key, retrying what `retry_if` allows; the last response, read
        whole up to `max_answer_bytes`.

        Raises a transient :class:`ProviderFailure` when no answer came at all, or one too large.
        """
        span_of = functools.partial(self._span_attributes, method, self.http.base_url.host)
        with tracing.client_span(f"{method} {path}", span_of):
            response = await self._request(method, path, json, params, headers, retry_if)
            tracing.answered(response.status_code)
            return response

    async def _request(  # noqa: PLR0917 - request()'s arguments, passed on
        self,
        method: str,
        path: str,
        json: dict[str, Any] | None,
        params: dict[str, str] | None,
        headers: dict[str, str] | None,
        retry_if: Callable[[httpx.Response], bool],
    ) -> httpx.Response:
        # The task's trace goes along (`X-Trace-Id`, W3C `traceparent`), so the upstream's own
        # log names it too and its spans join the task's trace.
        headers = {**self.auth, **trace_headers(), **tracing.upstream_headers(), **(headers or {})}
        limit = self.options.max_answer_bytes
        try:
            async for attempt in self._retrier():
                with attempt:
                    request = self.http.build_request(method, path, json=json, params=params, headers=headers)
                    response = await send_capped(self.http, request, limit)
                    if retry_if(response):
                        raise _RetryableResponse(response)
                    return response
        except _RetryableResponse as exc:
            return exc.response
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc
        except BodyError as exc:
            raise failure_for_body(f"the answer to {method} {path}", exc, "max_answer_bytes") from exc
        raise AssertionError("retry_context ended without an attempt")  # pragma: no cover

    def _span_attributes(self, method: str, host: str) -> Attributes:
        """A provider call's span: the method, the host called, and which upstream it is."""
        return {"http.request.method": method, "server.address": host, "gengate.upstream": self.name}

    async def call(self, method: str, path: str, **kwargs: Any) -> tuple[dict[str, Any], str | None]:
        """`data` of a `{code, message|msg, data}` envelope, and the answer's trace id."""
        response = await self.request(method, path, **kwargs)
        try:
            return unwrap(response), response.headers.get("X-Trace-Id")
        except APIError as exc:
            raise failure_for_request(exc) from exc
        except ProtocolError as exc:
            raise provider_fault(f"unexpected answer from {path}: {exc}") from exc

    # -- following a task and copying its results (see .follow and .mirror) -----------------
    @contextlib.contextmanager
    def callback(self) -> Iterator[HookWaiter | None]:
        """A callback waiter when the upstream can reach us and callbacks are on, else None."""
        if self.hooks is None or not self.options.callbacks:
            yield None
            return
        with self.hooks.waiter() as waiter:
            yield waiter

    def announce(self, ctx: RunContext, submitted: Submitted) -> None:
        """Hand the upstream task id and trace id to the worker, and log them."""
        log.info(
            "task %s runs upstream on %s as %s (trace_id %s)",
            ctx.task_id,
            self.name,
            submitted.task_id,
            submitted.trace_id,
        )
        ctx.on_upstream(submitted.task_id, submitted.trace_id)

    async def follow(
        self,
        ctx: RunContext,
        read: Callable[[], Awaitable[TaskStatus]],
        waiter: HookWaiter | None,
        cancel: Callable[[], Awaitable[None]],
    ) -> TaskStatus:
        """The task's final status, read until it ends: :func:`.follow.follow`."""
        return await following.follow(self, ctx, read, waiter, cancel)

    async def finish(self, ctx: RunContext, status: TaskStatus) -> list[OutputFile]:
        """The results of an ended upstream task, copied here; its failure, translated."""
        return await following.finish(self, ctx, status)

    async def mirror(self, ctx: RunContext, urls: Sequence[str]) -> list[OutputFile]:
        """Copy each result into `ctx.output_dir`, streaming: our URLs outlive the upstream's."""
        return await mirroring.mirror(self, ctx, urls)

    async def download(self, url: str, folder: Path, index: int) -> OutputFile:
        """Stream one result URL into `folder` as `<index><suffix>`, retrying as requests do."""
        base = self.http.base_url
        target = base.join(url)
        if target.scheme not in ("http", "https"):
            raise provider_fault(f"result URL {url[:100]!r} is not http(s)")
        same_origin = (target.scheme, target.host, target.port) == (base.scheme, base.host, base.port)
        span_of = functools.partial(self._span_attributes, "GET", target.host)
        with tracing.client_span("GET result", span_of):
            saved = await self._download(target, folder, index, same_origin)
            tracing.answered(200)
            return saved

    async def _download(self, target: httpx.URL, folder: Path, index: int, same_origin: bool) -> OutputFile:
        headers = {**trace_headers(), **tracing.upstream_headers(), **(self.auth if same_origin else {})}
        try:
            async for attempt in self._retrier():
                with attempt:
                    async with self.http.stream(
                        "GET", target, headers=headers, follow_redirects=True
                    ) as answer:
                        if retryable(answer):
                            raise _RetryableResponse(answer)  # its body is never read
                        if not answer.is_success:
                            raise provider_fault(f"result download answered HTTP {answer.status_code}")
                        limit = self.options.max_result_bytes
                        return await mirroring.save(answer, folder, index, limit)
        except _RetryableResponse as exc:
            raise provider_fault(f"result download answered HTTP {exc.response.status_code}") from exc
        except httpx.TransportError as exc:
            raise failure_for_transport(exc) from exc
        raise AssertionError("retry_context ended without an attempt")  # pragma: no cover
