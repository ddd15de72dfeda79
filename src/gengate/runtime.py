"""The gateway's parts wired together from settings, and their start and stop.

The CLI, the tests and embedding applications all build a gateway here, so that
`gengate serve` and an in-process test run the very same assembly.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from gengate import bootstrap
from gengate.api.app import build_app
from gengate.api.callbacks import callback_body
from gengate.api.context import ApiContext
from gengate.files.cleanup import run_cleanup
from gengate.files.local import LocalFileStore
from gengate.files.signing import UrlSigner
from gengate.metrics import Metrics
from gengate.providers.registry import build_catalogue, build_providers
from gengate.services.keys import KeyService
from gengate.services.tasks import TaskService
from gengate.settings import Settings
from gengate.store.notify import ChangeHub
from gengate.store.sqlite import SQLiteStore
from gengate.webhooks.sender import WebhookSender
from gengate.webhooks.ssrf import AddressPolicy
from gengate.worker.pool import WorkerPool

log = logging.getLogger(__name__)


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.admin_key, self.admin_key_is_new = bootstrap.admin_key(settings)
        self.hub = ChangeHub()
        self.store = SQLiteStore(
            settings.sqlite_path,
            self.hub,
            first_callback_delay_ms=int(settings.webhook_retry_schedule[0] * 1000),
        )
        self.providers = build_providers(settings)
        self.catalogue = build_catalogue(settings, self.providers)
        self.files = LocalFileStore(
            settings.files_dir, settings.base_url, UrlSigner(bootstrap.server_secret(settings))
        )
        secret = bootstrap.server_secret(settings)
        self.metrics = Metrics()
        self.keys = KeyService(self.store, self.admin_key, server_secret=secret)
        policy = AddressPolicy.from_env_value(",".join(settings.webhook_allow))
        self.tasks = TaskService(self.store, self.hub, self.catalogue, policy)
        self.pool = WorkerPool(
            store=self.store,
            hub=self.hub,
            catalogue=self.catalogue,
            providers=self.providers,
            files=self.files,
            slots=settings.workers,
            lease_ms=int(settings.lease_s * 1000),
        )
        self.webhooks = WebhookSender(
            store=self.store,
            hub=self.hub,
            render=functools.partial(callback_body, ctx=self.api_context()),
            secret_for=self.keys.webhook_secret_of,
            policy=policy,
            schedule=tuple(settings.webhook_retry_schedule),
            metrics=self.metrics,
            timeout_s=settings.webhook_timeout_s,
            concurrency=settings.webhook_concurrency,
        )
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        if self.settings.workers > 0:
            await self.pool.start()
        await self.webhooks.start()
        ttl_ms = self.settings.result_ttl * 1000
        cleanup = run_cleanup(self.store, self.files, ttl_ms, self.settings.cleanup_interval_s)
        self._background.append(asyncio.create_task(cleanup, name="gengate-cleanup"))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.settings.workers > 0:
            await self.pool.stop()
        await self.webhooks.stop()
        await self.store.close()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Gateway]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    def api_context(self) -> ApiContext:
        return ApiContext(
            keys=self.keys,
            tasks=self.tasks,
            catalogue=self.catalogue,
            files=self.files,
            result_ttl_ms=self.settings.result_ttl * 1000,
            max_body_bytes=self.settings.max_body_bytes,
            sync_wait_s=self.settings.sync_wait,
            metrics=self.metrics,
        )

    def asgi(self) -> ASGIApp:
        """The app, starting and stopping this gateway with the server's lifespan."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
            async with self.running():
                yield {}

        return build_app(self.api_context(), lifespan)
