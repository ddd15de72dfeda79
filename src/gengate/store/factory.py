"""The store the settings ask for: SQLite in the data folder by default, PostgreSQL by URL."""

from __future__ import annotations

from gengate.domain.callback_schedule import first_delay_ms
from gengate.settings import Settings
from gengate.store.base import Store
from gengate.store.notify import ChangeHub


def is_postgres_url(url: str | None) -> bool:
    return bool(url) and str(url).startswith(("postgresql://", "postgres://"))


def build_store(settings: Settings, hub: ChangeHub) -> Store:
    """The store, prepared (the schema applied; PostgreSQL waited for up to `database_wait_s`):
    a database that cannot be used is a StartupError naming it here, before a server starts,
    rather than a traceback from the server's lifespan."""
    first_delay = first_delay_ms(settings.webhook_retry_schedule)
    if is_postgres_url(settings.database_url):
        # Imported here: the embedded setup never loads the PostgreSQL driver.
        from gengate.store.postgres import PostgresStore  # noqa: PLC0415

        assert settings.database_url is not None
        networked = PostgresStore(
            settings.database_url,
            hub,
            first_callback_delay_ms=first_delay,
            pool_size=settings.database_pool_size,
            connect_timeout_s=settings.database_wait_s,
        )
        networked.prepare()
        return networked
    from gengate.store.sqlite import SQLiteStore  # noqa: PLC0415

    embedded = SQLiteStore(settings.sqlite_path, hub, first_callback_delay_ms=first_delay)
    embedded.prepare()
    return embedded
