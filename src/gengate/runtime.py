"""The gateway's parts wired together from settings, and their start and stop.

The CLI, the tests and embedding applications all build a gateway here, so that
`gengate serve` and an in-process test run the very same assembly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.types import ASGIApp

from gengate import bootstrap, heap, logsafe
from gengate.api.app import build_app
from gengate.api.context import ApiContext
from gengate.api.disk_space import DiskSpace
from gengate.background import spawn
from gengate.dialects.links import SignedLinks
from gengate.domain.catalogue import Catalogue
from gengate.files.base import FileStore
from gengate.files.cleanup import run_cleanup
from gengate.files.factory import build_file_store
from gengate.files.signing import UrlSigner
from gengate.metrics import Metrics
from gengate.net.guard import AddressPolicy
from gengate.observability import logs, tracing
from gengate.observability.tracing_http import request_observers
from gengate.providers.base import Provider
from gengate.providers.fallback import circuit_states
from gengate.providers.registry import build_catalogue, build_providers, close_providers
from gengate.providers.relay.hooks import UpstreamHooks
from gengate.providers.server_pool import pool_states
from gengate.services.keys import KeyService
from gengate.services.moderation import build_moderator
from gengate.services.ratelimit import RateLimiter
from gengate.services.tasks import TaskService
from gengate.settings import Settings, load_settings
from gengate.store.base import Store
from gengate.store.factory import build_store
from gengate.store.notify import ChangeHub
from gengate.store.sqlite import SQLiteStore
from gengate.webhooks.sender import WebhookSender
from gengate.worker.pool import WorkerPool

log = logging.getLogger(__name__)


@dataclass
class Core:
    """What both a gateway and a standalone worker are built on."""

    hub: ChangeHub
    store: Store
    providers: dict[str, Provider]
    catalogue: Catalogue
    files: FileStore
    #: Upstream callbacks for the relays of this process.
    hooks: UpstreamHooks | None = None


def build_core(settings: Settings) -> Core:
    bootstrap.data_folder(settings)
    hub = ChangeHub()
    hooks = UpstreamHooks(bootstrap.server_secret(settings), settings.public_url)
    providers = build_providers(settings, hooks)
    return Core(
        hub=hub,
        store=build_store(settings, hub),
        providers=providers,
        catalogue=build_catalogue(settings, providers),
        files=build_file_store(settings, UrlSigner(bootstrap.server_secret(settings))),
        hooks=hooks,
    )


class Gateway:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        core = build_core(settings)
        self.admin_key, self.admin_key_is_new = bootstrap.admin_key(settings)
        self.hub = core.hub
        self.store = core.store
        self.providers = core.providers
        self.catalogue = core.catalogue
        self.files = core.files
        #: One cache of signed result URLs for the routes and the callback sender.
        self.links = SignedLinks(
            self.files,
            settings.result_ttl * 1000,
            api_base=settings.base_url,
            model_owner=settings.replicate_owner,
        )
        self.hooks = core.hooks
        secret = bootstrap.server_secret(settings)
        self.metrics = Metrics()
        self.metrics.watch_circuits(lambda: circuit_states(self.providers))
        self.metrics.watch_servers(lambda: pool_states(self.providers))
        self.metrics.watch_store(self.store, (spec.id for spec in self.catalogue))
        self.keys = KeyService(self.store, self.admin_key, server_secret=secret)
        policy = AddressPolicy.from_env_value(",".join(settings.webhook_allow))
        self.rate_limiter = RateLimiter(settings.rate_limit_storage, settings.rate_limit)
        self.tasks = TaskService(
            self.store,
            self.hub,
            self.catalogue,
            policy,
            moderator=build_moderator(settings),
            max_queue_depth=settings.max_queue_depth,
            metrics=self.metrics.tasks,
        )
        self.pool = WorkerPool(
            store=self.store,
            hub=self.hub,
            catalogue=self.catalogue,
            providers=self.providers,
            files=self.files,
            slots=settings.workers,
            lease_ms=int(settings.lease_s * 1000),
            metrics=self.metrics.tasks,
        )
        self.webhooks = WebhookSender(
            store=self.store,
            hub=self.hub,
            links=self.links,
            secret_for=self.keys.webhook_secret_of,
            policy=policy,
            schedule=tuple(settings.webhook_retry_schedule),
            metrics=self.metrics,
            timeout_s=settings.webhook_timeout_s,
            concurrency=settings.webhook_concurrency,
            host_concurrency=settings.webhook_host_concurrency,
            slow_s=settings.webhook_slow_s,
            http2=settings.webhook_http2,
        )
        self._background: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.store.open()
        if self.settings.workers > 0:
            await self.pool.start()
        await self.webhooks.start()
        ttl_ms = self.settings.result_ttl * 1000
        cleanup = run_cleanup(self.store, self.files, ttl_ms, self.settings.cleanup_interval_s)
        self._background.append(spawn(cleanup, "result clean-up", name="gengate-cleanup"))

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.settings.workers > 0:
            await self.pool.stop()
        await close_providers(self.providers)
        await self.webhooks.stop()
        await self.files.close()
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
            links=self.links,
            max_body_bytes=self.settings.max_body_bytes,
            sync_wait_s=self.settings.sync_wait,
            metrics=self.metrics,
            request_observers=(self.metrics.http, *request_observers()),
            rate_limiter=self.rate_limiter,
            providers=self.providers,
            upstream_hooks=self.hooks,
            disk_space=DiskSpace.of_settings(self.settings),
            write_health=self.store.write_health if isinstance(self.store, SQLiteStore) else None,
            console_session_ttl_s=self.settings.console_session_ttl_s,
            console_signin_limit=self.settings.console_signin_limit,
            access_log=self.settings.access_log,
        )

    def asgi(self, *, server_process: bool = False) -> ASGIApp:
        """The app, starting and stopping this gateway with the server's lifespan. In a
        process of its own (`gengate serve`), the collector is settled once started
        (:mod:`gengate.heap`); an app embedded elsewhere leaves the host's collector alone."""

        @contextlib.asynccontextmanager
        async def lifespan(_app: Starlette) -> AsyncIterator[dict[str, Any]]:
            async with self.running():
                if server_process:
                    heap.settle_after_start()
                yield {}

        return build_app(self.api_context(), lifespan)


def asgi_from_environment() -> ASGIApp:
    """The app of one of several API processes (`gengate serve --processes N`): the settings
    come from the environment, where the parent process put its flags."""
    settings = load_settings()
    logs.configure(settings.log_level, settings.log_format)
    tracing.setup("serve")
    gateway = Gateway(settings)
    logsafe.add_secret(gateway.admin_key)
    return gateway.asgi(server_process=True)
