"""Shared fixtures: a real relay on a free loopback port with a real SQLite file."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd.config.settings import Settings
from relayd.daemon.relay import Relay
from tests.helpers import RelaydProcess


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": 0,
        "db_path": tmp_path / "relay.db",
        "socket_path": tmp_path / "run" / "relayd.sock",
        "config_path": tmp_path / "config.toml",
        "sse_keepalive_seconds": 15.0,
    }
    base.update(overrides)
    return Settings(**base)


@pytest.fixture
def relay_db_url() -> str | None:
    """The DB_URL of in-process relays: None is SQLite (tests/api/conftest.py adds PostgreSQL)."""
    return None


@pytest.fixture
async def relay_factory(
    tmp_path: Path, relay_db_url: str | None
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Relay] = []

    async def start(**overrides: Any) -> Relay:
        if relay_db_url is not None:
            overrides.setdefault("db_url", relay_db_url)
        relay = Relay(make_settings(tmp_path, **overrides))
        await relay.start()
        started.append(relay)
        return relay

    yield start
    for relay in reversed(started):
        if relay.http.runner is not None:
            await relay.stop()


@pytest.fixture
async def relay(relay_factory: Callable[..., Any]) -> Relay:
    relay: Relay = await relay_factory()
    return relay


@pytest.fixture
async def http(relay: Relay) -> AsyncIterator[aiohttp.ClientSession]:
    """A client for the relay's API: `await http.get("/api/agents")`."""
    async with aiohttp.ClientSession(base_url=relay.url) as session:
        yield session


@pytest.fixture
def relayd_process(tmp_path: Path) -> Iterator[Callable[..., RelaydProcess]]:
    processes: list[RelaydProcess] = []

    def start(env: dict[str, str] | None = None, args: list[str] | None = None,
              expect_serving: bool = True) -> RelaydProcess:
        process = RelaydProcess(tmp_path, env, args).start(expect_serving=expect_serving)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()
