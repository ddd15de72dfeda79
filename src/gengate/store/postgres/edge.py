"""The edge of the PostgreSQL driver: waiting for the server at start, and which errors mean
"the database cannot answer now"."""

from __future__ import annotations

import logging
import math
import re
import time

import asyncpg
import psycopg

from gengate.startup import StartupError, reason, redacted_url
from gengate.store.edge import unavailable_on
from gengate.store.migrate import _migrate_postgres_sync

Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy

#: Errors that mean "the database cannot answer now", as opposed to a bug in a statement.
UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)

unavailable_on_error = unavailable_on(*UNAVAILABLE)

log = logging.getLogger(__name__)
#: SQLSTATE classes a wait does not cure: bad credentials (28), no such database (3D).
_FOR_GOOD = ("28", "3D")
_LONGEST_CONNECT_S = 10


def wait_for_postgres(dsn: str, wait_s: float, *, migrate: bool = True) -> int:
    """At start: apply the schema (or just connect) once the server answers, waiting up to
    `wait_s` for one that is still starting; returns how many migrations ran. A server that
    does not answer in time, or refuses us for good, is a StartupError naming the URL."""
    url = redacted_url(dsn)
    deadline = time.monotonic() + wait_s
    delay = 0.2
    said = False
    while True:
        try:
            left = max(deadline - time.monotonic(), 0)
            with psycopg.connect(dsn, connect_timeout=max(2, math.ceil(min(left, _LONGEST_CONNECT_S)))):
                pass
            return _migrate_postgres_sync(dsn) if migrate else 0
        except psycopg.OperationalError as exc:
            why = _why(exc)
            if (exc.sqlstate or "")[:2] in _FOR_GOOD:
                raise StartupError(
                    f"PostgreSQL at {url} refuses us: {why}; correct GENGATE_DATABASE_URL"
                ) from None
            if time.monotonic() + delay > deadline:
                waited = f" (waited {wait_s:g} s, GENGATE_DATABASE_WAIT_S)" if wait_s else ""
                raise StartupError(
                    f"cannot reach PostgreSQL at {url}: {why}{waited}; "
                    "start it or correct GENGATE_DATABASE_URL"
                ) from None
            if not said:
                log.warning("waiting up to %g s for PostgreSQL at %s (%s)", wait_s, url, why)
                said = True
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
        except psycopg.Error as exc:
            raise StartupError(f"PostgreSQL at {url}: cannot apply the schema: {_why(exc)}") from None


def connect_failure(dsn: str, exc: BaseException) -> StartupError:
    """The pool could not be made although the server answered a moment ago."""
    return StartupError(f"cannot connect to PostgreSQL at {redacted_url(dsn)}: {_why(exc)}")


def _why(exc: BaseException) -> str:
    """`Connection refused`, not libpq's two lines that repeat the host and port."""
    text = reason(exc)
    failed = re.search(r".*failed: (.+)$", text)
    return failed.group(1) if failed else text


def rowcount(status: str) -> int:
    """Rows a statement changed, from asyncpg's command tag (`UPDATE 1`)."""
    return int(status.rsplit(" ", 1)[-1])
