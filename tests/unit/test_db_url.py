"""db_url selects the backend: DB_URL / --db-url / TOML db_url, postgresql:// or postgres://."""

from __future__ import annotations

from pathlib import Path

import pytest

from relayctl.commands.status import describe
from relayd.config.settings import SettingsError, load
from relayd.main import parse_args
from relayd.storage import open_store
from relayd.storage.postgres import PostgresStore, redact
from relayd.storage.sqlite import SQLiteStore

URL = "postgresql://relay:s3cret@db.example:5432/relay"


def test_db_url_from_toml_env_and_flag(tmp_path: Path) -> None:
    config = tmp_path / "config.toml"
    config.write_text(f'db_url = "{URL}"\n')
    assert load(config=config, env={}).db_url == URL
    other = "postgres://x@h/db"
    assert load(config=config, env={"DB_URL": other}).db_url == other
    flag = parse_args(["--db-url", "postgres://flag@h/db"]).db_url
    assert load(config=config, env={"DB_URL": other}, overrides={"db_url": flag}).db_url == flag
    assert load(config=config, env={"DB_URL": ""}).db_url is None  # empty: back to SQLite


@pytest.mark.parametrize("bad", ["mysql://h/db", "sqlite:///x.db", "localhost:5432"])
def test_other_urls_are_refused_naming_the_setting(bad: str) -> None:
    with pytest.raises(SettingsError, match=r"db_url.*postgresql://"):
        load(env={"DB_URL": bad}, config=None)


def test_open_store_picks_the_backend(tmp_path: Path) -> None:
    assert isinstance(open_store(load(env={"DB_PATH": str(tmp_path / "r.db")})), SQLiteStore)
    store = open_store(load(env={"DB_URL": URL}))
    assert isinstance(store, PostgresStore) and store.backend == "postgresql"
    assert "s3cret" not in store.location and redact(URL) == store.location


def test_status_shows_the_backend_and_the_replica() -> None:
    text = describe({
        "version": "1", "pid": 7, "database": {"backend": "postgresql",
                                                "location": redact(URL), "sizeBytes": None},
        "replica": {"id": "host:7", "backend": "postgresql", "jobs": ["callbacks"]},
    })
    assert f"database   {redact(URL)} [postgresql]" in text
    assert "replica    host:7 (postgresql)" in text and "s3cret" not in text
