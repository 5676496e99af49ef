"""PostgreSQL for the tests: a fresh schema per test (CREATE DATABASE costs seconds here).

A schema a test used is emptied afterwards (rows deleted, id sequences restarted) and handed to
a later test of the same run, which is as fresh as a new one but skips the migrations; the
schemas are dropped when the run ends.

The server comes from AGENT_RELAY_TEST_PG_URL (CI starts one with .ci/start-postgres). Without
it the PostgreSQL parameters skip with that reason, except where AGENT_RELAY_TEST_PG_REQUIRED
(set by .ci/run) or CI is set: there they fail. A
relay's tables, lock keys and NOTIFY channel follow the schema its URL names (search_path).
"""

from __future__ import annotations

import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import pytest

ENV = "AGENT_RELAY_TEST_PG_URL"
# .ci/run sets this: there a missing or unreachable server fails the run instead of skipping
REQUIRED_ENV = "AGENT_RELAY_TEST_PG_REQUIRED"
_pool: list[str] = []  # emptied schemas, ready for another test
_made: list[str] = []


def server_url() -> str | None:
    return os.environ.get(ENV) or None


def required() -> bool:
    return bool(os.environ.get(REQUIRED_ENV) or os.environ.get("CI"))


def require_server() -> str:
    url = server_url()
    if url is None:
        if required():
            pytest.fail(f"{ENV} is not set: CI must run the PostgreSQL tests (.ci/start-postgres)")
        pytest.skip(f"no PostgreSQL for the tests: set {ENV} (eval \"$(.ci/start-postgres)\")")
    return url


def with_params(url: str, **params: str) -> str:
    """`url` with these query parameters added (asyncpg passes them on as server settings)."""
    parts = urlsplit(url)
    extra = "&".join(f"{key}={value}" for key, value in params.items())
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))


def schema_of(db_url: str) -> str:
    return db_url.rsplit("search_path=", 1)[1].split("&", 1)[0]


async def fresh_database(durable: bool = True) -> str:
    """A DB_URL for a new, empty schema (relayd applies its migrations there). With
    ``durable=False`` the relay's sessions commit without waiting for the WAL flush
    (synchronous_commit=off): the API suite tests behaviour, not crash durability (the e2e
    tests keep it on), and this makes its PostgreSQL half faster."""
    import asyncpg

    url = require_server()
    settings = {} if durable else {"synchronous_commit": "off"}
    if _pool:
        return with_params(url, search_path=_pool.pop(), **settings)
    schema = f"relay_t_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        message = f"cannot reach the test PostgreSQL at {url}: {exc}"
        if required():
            pytest.fail(message)
        pytest.skip(message)
    try:
        await admin.execute(f'CREATE SCHEMA "{schema}"')
    finally:
        await admin.close()
    _made.append(schema)
    return with_params(url, search_path=schema, **settings)


KEPT = ("schema_migrations", "id_marks")


async def release_database(db_url: str) -> None:
    """Empty the schema (its relays are stopped) and keep it for the next test."""
    import asyncpg

    url = server_url()
    if url is None:
        return
    schema = schema_of(db_url)
    admin = await asyncpg.connect(url, timeout=10)
    try:
        async with admin.transaction():
            tables = await admin.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1",
                                       schema)
            for (table,) in tables:
                if table not in KEPT:
                    await admin.execute(f'DELETE FROM "{schema}"."{table}"')
            for (sequence,) in await admin.fetch(
                "SELECT sequencename FROM pg_sequences WHERE schemaname = $1", schema
            ):
                await admin.execute(f'ALTER SEQUENCE "{schema}"."{sequence}" RESTART')
            if any(t == "id_marks" for (t,) in tables):
                await admin.execute(f'UPDATE "{schema}".id_marks SET value = 0')
    except asyncpg.PostgresError:  # a test left it in a state we cannot reset: drop it
        await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        return
    finally:
        await admin.close()
    _pool.append(schema)


def drop_all() -> None:
    """At the end of the run: drop every schema this run made."""
    url = server_url()
    if url is None or not _made:
        return
    import asyncio

    import asyncpg

    async def drop() -> None:
        admin = await asyncpg.connect(url, timeout=10)
        try:
            for schema in _made:
                await admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await admin.close()

    asyncio.run(drop())
