"""Running uvicorn on a socket bound beforehand: in this process, or in several processes that
share it under uvicorn's supervisor (which replaces any that dies)."""

from __future__ import annotations

import contextlib
import inspect
import socket
from typing import Any

from gengate.server.limits import ConnectionLimits
from gengate.server.protocol import GatewayConfig
from gengate.server.tls import tls_options
from gengate.settings import Settings

#: Seconds a stopping server gives requests in flight.
GRACEFUL_SHUTDOWN_S = 15


def server_config(app: Any, settings: Settings, **options: Any) -> GatewayConfig:
    """uvicorn's config for the gateway: uvloop, httptools bounded by the settings' limits, TLS
    when the settings name a certificate."""
    limits = ConnectionLimits.from_settings(settings)
    return GatewayConfig(
        app,
        limits=limits,
        loop="uvloop",
        access_log=False,  # gengate's own request line instead (gengate.observability.requests)
        log_config=None,  # uvicorn's lines go through the process's one handler and format
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        timeout_keep_alive=limits.keep_alive_s,
        **tls_options(settings),
        **options,
    )


def run_in_process(app: Any, settings: Settings, sock: socket.socket) -> None:
    import uvicorn  # noqa: PLC0415 - the CLI imports this module only to serve

    with contextlib.suppress(KeyboardInterrupt):
        uvicorn.Server(server_config(app, settings)).run(sockets=[sock])


def run_processes(factory_path: str, settings: Settings, sock: socket.socket, processes: int) -> None:
    """`processes` API processes, each building its app with `factory_path` (`module:function`)."""
    import uvicorn  # noqa: PLC0415
    from uvicorn.supervisors import Multiprocess  # noqa: PLC0415

    config = server_config(factory_path, settings, factory=True, workers=processes)
    supervise: Any = Multiprocess
    if "target" in inspect.signature(Multiprocess).parameters:  # uvicorn up to 0.45 takes the target
        supervisor = supervise(config, target=uvicorn.Server(config).run, sockets=[sock])
    else:
        supervisor = supervise(config, sockets=[sock])
    with contextlib.suppress(KeyboardInterrupt):
        supervisor.run()
