"""The listening socket, bound and listening before the gateway starts or says where it listens,
so that a port in use is one clear line rather than a traceback after a false banner."""

from __future__ import annotations

import errno
import socket

BACKLOG = 2048


class ListenError(Exception):
    """The address cannot be listened on; the message says which and what to do."""


def listen(host: str, port: int, backlog: int = BACKLOG) -> socket.socket:
    """A TCP socket bound to `host:port` and listening, inheritable by the API processes."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        raise ListenError(f"cannot listen on {where}: {_advice(exc)}") from exc
    sock.set_inheritable(True)
    return sock


def _advice(exc: OSError) -> str:
    if isinstance(exc, socket.gaierror):
        return f"unknown host ({exc.strerror}); choose another with --host or GENGATE_HOST"
    if exc.errno == errno.EADDRINUSE:
        return "address already in use; choose another port with --port or GENGATE_PORT"
    if exc.errno == errno.EACCES:
        return (
            "permission denied (ports below 1024 need privileges); "
            "choose another port with --port or GENGATE_PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return "no such address on this machine; choose another with --host or GENGATE_HOST"
    return f"{exc.strerror or exc}; choose another address with --host/--port or GENGATE_HOST/GENGATE_PORT"


def address_of(sock: socket.socket) -> tuple[str, int]:
    """The host and port a bound socket listens on (the real port when 0 was asked)."""
    host, port = sock.getsockname()[:2]
    return str(host), int(port)
