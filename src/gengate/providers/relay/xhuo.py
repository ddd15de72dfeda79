"""Relay to an XHuo-dialect upstream: `POST /api/v1/run/{model}`, seed 003's envelopes.

A run answers `{success: true, task_id, trace_id, ...business fields}` with the result URLs,
or an error `{error: {code, message}, trace_id}` with no `success`. A run that names a
`task_id` in its error is a task that ran and failed (its `error.code` is the failCode); one
without is a refused request. The dialect has no status route of its own; when the upstream
also speaks APIXO or KIE status reads (`status_dialect`, as gengate does), the relay can follow
a task past the run's wait limit (504 `timeout` with `task_id`) and can ask for a callback
instead of holding the request open. Without one, a run waits for its answer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal
from urllib.parse import quote

import httpx

from gengate.domain.files import OutputFile
from gengate.providers.base import Provider, ProviderFailure, RunContext
from gengate.providers.relay.apixo import ApixoDialect
from gengate.providers.relay.errors import failure_for_request, failure_for_task, provider_fault
from gengate.providers.relay.follow import Submitted, TaskDialect, idempotency_key, until_canceled
from gengate.providers.relay.hooks import HookWaiter
from gengate.providers.relay.inputs import upstream_input
from gengate.providers.relay.kie import KieDialect
from gengate.providers.relay.model import UpstreamModel
from gengate.providers.relay.upstream import RelayOptions, Upstream, retryable
from gengate.wire import APIError, error_from_response

#: Business fields that may carry result URLs, in seed 003's style and gengate's.
_URL_LISTS = ("result_urls", "image_urls", "video_urls", "audio_urls", "urls")
_URL_FIELDS = ("image_url", "video_url", "audio_url", "url")


class XhuoOptions(RelayOptions, kw_only=True, forbid_unknown_fields=True):
    #: The upstream's status reads, in the APIXO or KIE dialect, for following a task.
    status_dialect: Literal["apixo", "kie"] | None = None


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _retry_run(response: httpx.Response) -> bool:
    """429/5xx, unless the answer names a task: then the run happened and failed."""
    return retryable(response) and not _json(response).get("task_id")


def result_urls(envelope: Mapping[str, Any]) -> list[str]:
    """Every URL among the business fields of a success envelope, in field order."""
    urls: list[str] = []
    for name in _URL_LISTS:
        value = envelope.get(name)
        if isinstance(value, list):
            urls += [url for url in value if isinstance(url, str)]
    for name in _URL_FIELDS:
        value = envelope.get(name)
        if isinstance(value, str) and value:
            urls.append(value)
    return urls


def _failure(response: httpx.Response, envelope: Mapping[str, Any]) -> ProviderFailure:
    error = envelope.get("error")
    if isinstance(error, dict) and envelope.get("task_id") and response.status_code != 504:
        return failure_for_task(str(error.get("code") or ""), str(error.get("message") or ""))
    try:
        api_error = error_from_response(response)
    except ValueError:  # pragma: no cover - error_from_response tolerates any body
        api_error = APIError(response.status_code, f"http_{response.status_code}", response.text[:200])
    return failure_for_request(api_error)


class XhuoRelay(UpstreamModel):
    """A provider for one upstream model of the XHuo dialect."""

    def __init__(self, upstream: Upstream, status: TaskDialect | None, model: str | None) -> None:
        super().__init__(upstream, model)
        self.status = status

    @contextlib.contextmanager
    def _callback(self) -> Iterator[HookWaiter | None]:
        """A callback only where a status read can check it: the body itself is never trusted."""
        if self.status is None:
            yield None
            return
        with self.upstream.callback() as waiter:
            yield waiter

    async def run(self, input: dict[str, Any], ctx: RunContext) -> Sequence[OutputFile]:
        up = self.upstream
        model = self.model or ctx.model
        body = upstream_input(input, ctx.mode)
        with self._callback() as waiter:
            if waiter is not None:
                body["callback_url"] = waiter.url
            response = await until_canceled(
                ctx.cancel,
                up.request(
                    "POST",
                    f"/api/v1/run/{quote(model, safe='')}",
                    json=body,
                    headers={"Idempotency-Key": idempotency_key(ctx, up)},
                    retry_if=_retry_run,
                ),
            )
            envelope = _json(response)
            task_id = envelope.get("task_id")
            if isinstance(task_id, str) and task_id:
                trace_id = envelope.get("trace_id") or response.headers.get("X-Trace-Id")
                up.announce(ctx, Submitted(task_id, trace_id if isinstance(trace_id, str) else None))
            else:
                task_id = None
            if response.is_success and envelope.get("success") is True:
                urls = result_urls(envelope)
                if urls:
                    return await up.mirror(ctx, urls)
                if task_id is None or self.status is None:
                    raise provider_fault("the run answered success without any result URL")
            elif not (response.status_code == 504 and task_id and self.status is not None):
                raise _failure(response, envelope)
            return await self._follow(ctx, model, task_id, waiter)

    async def _follow(
        self, ctx: RunContext, model: str, task_id: str | None, waiter: HookWaiter | None
    ) -> list[OutputFile]:
        up, status = self.upstream, self.status
        assert status is not None
        assert task_id is not None
        final = await up.follow(
            ctx,
            lambda: status.read(up, model, task_id),
            waiter,
            lambda: status.cancel(up, model, task_id),
        )
        return await up.finish(ctx, final)


def link(up: Upstream, model: str | None) -> Provider:
    """The provider relaying `model` (None: the gateway's own model id) to this upstream."""
    assert isinstance(up.options, XhuoOptions)
    dialects: dict[str, TaskDialect] = {"apixo": ApixoDialect(), "kie": KieDialect()}
    status = None if up.options.status_dialect is None else dialects[up.options.status_dialect]
    return XhuoRelay(up, status, model)
