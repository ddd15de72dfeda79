"""The PostgreSQL driver and the networked store built on it."""

from gengate.store.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
