"""The API suite runs on both backends: every test that uses `relay_factory` (and so `relay`
and `http`) runs once on SQLite and once on a fresh PostgreSQL schema (tests/pg.py).

Tests about SQLite's own file (deleting it under the relay) are marked ``sqlite_only``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests import pg


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "sqlite_only: about the SQLite file; not run on PostgreSQL")


def pytest_sessionfinish(session: pytest.Session) -> None:
    pg.drop_all()


@pytest.fixture(params=["sqlite", "postgresql"])
async def relay_db_url(request: pytest.FixtureRequest) -> AsyncIterator[str | None]:
    if request.param == "sqlite":
        yield None
        return
    if request.node.get_closest_marker("sqlite_only"):
        pytest.skip("about the SQLite database file")
    db_url = await pg.fresh_database(durable=False)
    yield db_url
    await pg.release_database(db_url)
