"""Storage backends behind one interface (relayd.storage.base.Store)."""

from __future__ import annotations

from relayd.config.settings import Settings
from relayd.storage.base import Store


def open_store(settings: Settings) -> Store:
    """The backend `settings` name (SQLite at db_path; PostgreSQL comes with issue 11)."""
    from relayd.storage.sqlite import SQLiteStore

    return SQLiteStore(settings.db_path)
