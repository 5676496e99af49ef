"""Storage backends behind one interface (relayd.storage.base.Store)."""

from __future__ import annotations

from relayd.config.settings import Settings
from relayd.storage.base import Store


def open_store(settings: Settings) -> Store:
    """The backend `settings` name: PostgreSQL for a db_url, else the SQLite file db_path."""
    if settings.db_url:
        from relayd.storage.postgres import PostgresStore  # asyncpg loads only when used

        return PostgresStore(settings.db_url)
    from relayd.storage.sqlite import SQLiteStore

    return SQLiteStore(settings.db_path)
