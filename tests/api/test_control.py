"""The control socket of an in-process relay: real Unix socket, real SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import sqlite3
import stat
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd import __version__
from relayd.config import paths
from relayd.daemon.relay import Relay
from relayd.errors import StartupError
from tests.conftest import make_settings

API = {"X-Agent-Relay-Control-Api": "1"}


@pytest.fixture
async def control(relay: Relay) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.UnixConnector(path=str(relay.settings.socket_path))
    async with aiohttp.ClientSession(
        base_url="http://relayd", connector=connector, headers=API
    ) as session:
        yield session


async def test_status_reports_the_running_relay(
    relay: Relay, control: aiohttp.ClientSession
) -> None:
    resp = await control.get("/v1/status")
    assert resp.status == 200
    assert resp.headers["X-Agent-Relay-Version"] == __version__
    status = await resp.json()
    assert status["pid"] == os.getpid()
    assert status["version"] == __version__
    assert status["listen"]["url"] == relay.url
    assert status["database"]["backend"] == relay.ctx.store.backend
    assert status["database"]["location"] == relay.ctx.store.location
    if relay.ctx.store.backend == "sqlite":
        assert status["database"]["path"] == str(relay.settings.db_path)
        assert status["database"]["sizeBytes"] > 0
    else:  # never the password; no file to measure
        assert status["database"]["path"] is None and "://" in status["database"]["location"]
    assert status["memory"]["rssBytes"] > 1_000_000
    assert status["counts"]["agents"]["total"] == 0
    assert status["uptimeSeconds"] >= 0


async def test_socket_is_private_and_recorded(relay: Relay) -> None:
    sock = relay.settings.socket_path
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    record = json.loads((sock.parent / paths.LISTEN_FILENAME).read_text())
    assert record == {**record, "pid": os.getpid(), "socket": str(sock), "url": relay.url}


@pytest.mark.parametrize("header", ["Origin", "Referer"])
async def test_browser_requests_are_refused(control: aiohttp.ClientSession, header: str) -> None:
    resp = await control.get("/v1/status", headers={header: "http://evil.example"})
    assert resp.status == 403
    assert (await resp.json())["code"] == "forbidden"
    assert resp.headers["X-Agent-Relay-Version"] == __version__


async def test_api_version_mismatch_is_a_clear_400(control: aiohttp.ClientSession) -> None:
    resp = await control.get("/v1/status", headers={"X-Agent-Relay-Control-Api": "2"})
    assert resp.status == 400
    assert "version '2' is not supported" in (await resp.json())["error"]


async def test_other_uid_is_refused(
    control: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_uid = os.getuid()
    monkeypatch.setattr("relayd.control.guard.os.getuid", lambda: real_uid + 4242)
    resp = await control.get("/v1/status")
    assert resp.status == 403
    assert f"uid {real_uid} may not use" in (await resp.json())["error"]


async def test_unknown_route_and_method(control: aiohttp.ClientSession) -> None:
    assert (await control.get("/v1/nope")).status == 404
    resp = await control.get("/v1/shutdown")
    assert resp.status == 405
    assert (await resp.json())["code"] == "method_not_allowed"


async def test_token_rotation_applies_live_and_is_saved(
    relay_factory: Callable[..., Any], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text('token = "old-token-123456"\nretention_days = 7\n')
    relay: Relay = await relay_factory(token="old-token-123456")
    async with _control(relay) as control:
        resp = await control.post("/v1/token/rotate")
        assert resp.status == 200
        new = (await resp.json())["token"]
    assert len(new) >= 40
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    saved = tomllib.loads(config.read_text())
    assert saved == {"token": new, "retention_days": 7}
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        old = await http.get("/api/agents", headers={"Authorization": "Bearer old-token-123456"})
        assert old.status == 401
        fresh = await http.get("/api/agents", headers={"Authorization": f"Bearer {new}"})
        assert fresh.status == 200


async def test_reload_applies_the_file_and_refuses_a_broken_one(
    relay_factory: Callable[..., Any], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("stale_ttl_ms = 5000\n")
    relay: Relay = await relay_factory()
    async with _control(relay) as control:
        resp = await control.post("/v1/reload")
        assert resp.status == 200
        assert "stale_ttl_ms" in (await resp.json())["changed"]
        assert relay.settings.stale_ttl_ms == 5000
        config.write_text("stale_ttl_ms = 'soon'\n")
        resp = await control.post("/v1/reload")
        assert resp.status == 400
        assert "stale_ttl_ms" in (await resp.json())["error"]
    assert relay.settings.stale_ttl_ms == 5000


async def test_prune_runs_the_reaper_now(control: aiohttp.ClientSession) -> None:
    resp = await control.post("/v1/prune")
    assert resp.status == 200
    pruned = (await resp.json())["pruned"]
    assert pruned["agents"] == {"offline": 0, "removed": 0}
    assert "history" in pruned


@pytest.mark.sqlite_only  # PostgreSQL is backed up with pg_dump (409 here; docs/scaling.md)
async def test_backup_writes_a_usable_copy(
    relay: Relay, control: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        assert (await http.post("/api/agents", json={"id": "alice"})).status == 201
    target = tmp_path / "backups" / "copy.db"
    target.parent.mkdir()
    resp = await control.post("/v1/backup", json={"path": str(target)})
    assert resp.status == 200
    answer = await resp.json()
    assert answer == {"path": str(target), "sizeBytes": target.stat().st_size}
    assert list(target.parent.iterdir()) == [target]  # no partial file left over
    with sqlite3.connect(target) as db:
        assert db.execute("SELECT id FROM agents").fetchall() == [("alice",)]


async def test_backup_on_postgresql_names_pg_dump(
    relay: Relay, control: aiohttp.ClientSession, tmp_path: Path
) -> None:
    if relay.ctx.store.backend == "sqlite":
        pytest.skip("SQLite backs itself up (test_backup_writes_a_usable_copy)")
    resp = await control.post("/v1/backup", json={"path": str(tmp_path / "copy.db")})
    assert resp.status == 409
    assert "pg_dump" in (await resp.json())["error"]
    assert not (tmp_path / "copy.db").exists()


@pytest.mark.parametrize(
    "body, words",
    [
        ({"path": "relative/copy.db"}, "must be absolute"),
        ({"path": "/nonexistent-dir-xyz/copy.db"}, "does not exist"),
        ({}, "path is required"),
        ({"path": 5}, "path is required"),
    ],
)
async def test_backup_refuses_bad_paths(
    control: aiohttp.ClientSession, body: dict[str, Any], words: str
) -> None:
    resp = await control.post("/v1/backup", json=body)
    assert resp.status == 400
    assert words in (await resp.json())["error"]


async def test_backup_refuses_the_live_database_and_bad_json(
    relay: Relay, control: aiohttp.ClientSession
) -> None:
    resp = await control.post("/v1/backup", json={"path": str(relay.settings.db_path)})
    assert resp.status == 400
    resp = await control.post("/v1/backup", data=b"{not json")
    assert resp.status == 400
    assert (await resp.json())["code"] == "invalid_json"


async def test_logs_tail_and_follow(control: aiohttp.ClientSession) -> None:
    logger = logging.getLogger("relayd.test")
    logger.setLevel(logging.INFO)
    logger.info("first line for the ring")
    resp = await control.get("/v1/logs", params={"n": "5"})
    lines = (await resp.json())["lines"]
    assert 1 <= len(lines) <= 5
    assert lines[-1].endswith("first line for the ring")
    resp = await control.get("/v1/logs", params={"n": "1", "follow": "1"})
    assert (await resp.content.readline()).decode().endswith("first line for the ring\n")
    logger.info("a later line")
    line = await asyncio.wait_for(resp.content.readline(), 5)
    assert line.decode().endswith("a later line\n")
    resp.close()


@pytest.mark.parametrize("n", ["abc", "-1", "10001"])
async def test_logs_refuses_bad_n(control: aiohttp.ClientSession, n: str) -> None:
    resp = await control.get("/v1/logs", params={"n": n})
    assert resp.status == 400


async def test_shutdown_answers_then_stops(relay: Relay, control: aiohttp.ClientSession) -> None:
    resp = await control.post("/v1/shutdown")
    assert resp.status == 200
    assert (await resp.json())["stopping"] is True
    assert relay.stop_task is not None
    await asyncio.wait_for(relay.stop_task, 10)
    assert not relay.settings.socket_path.exists()
    assert not (relay.settings.socket_path.parent / paths.LISTEN_FILENAME).exists()


async def test_stop_removes_socket_and_listen_file(relay: Relay) -> None:
    await relay.stop()
    assert not relay.settings.socket_path.exists()
    assert not (relay.settings.socket_path.parent / paths.LISTEN_FILENAME).exists()


async def test_second_relay_refuses_live_socket_and_database(
    relay: Relay, tmp_path: Path
) -> None:
    same_socket = Relay(make_settings(tmp_path, db_path=tmp_path / "other.db"))
    with pytest.raises(StartupError, match=r"already running \(pid \d+, socket"):
        await same_socket.start()
    same_db = Relay(make_settings(tmp_path, socket_path=tmp_path / "run2" / "s.sock"))
    with pytest.raises(StartupError, match=r"already running \(pid \d+, database"):
        await same_db.start()
    assert relay.settings.socket_path.exists()
    async with _control(relay) as control:
        assert (await control.get("/v1/status")).status == 200


async def test_stale_socket_is_replaced(relay_factory: Callable[..., Any], tmp_path: Path) -> None:
    path = tmp_path / "run" / "relayd.sock"
    path.parent.mkdir(mode=0o700)
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # bound, never listening: connecting is refused, like a crashed relayd
    dead.close()
    relay: Relay = await relay_factory()
    async with _control(relay) as control:
        assert (await control.get("/v1/status")).status == 200


async def test_socket_path_too_long_is_refused(tmp_path: Path) -> None:
    long_path = tmp_path / ("d" * 60) / ("s" * 60 + ".sock")
    relay = Relay(make_settings(tmp_path, socket_path=long_path))
    with pytest.raises(StartupError, match="control socket path is too long"):
        await relay.start()
    assert relay.http.runner is None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to chown to another user")
async def test_socket_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    os.chown(foreign, 65534, 65534)
    relay = Relay(make_settings(tmp_path, socket_path=foreign / "s.sock"))
    with pytest.raises(StartupError, match="belongs to another user"):
        await relay.start()
    # the failed start released the database lock: a correct relay can start now
    ok = Relay(make_settings(tmp_path))
    await ok.start()
    await ok.stop()


def _control(relay: Relay) -> aiohttp.ClientSession:
    connector = aiohttp.UnixConnector(path=str(relay.settings.socket_path))
    return aiohttp.ClientSession(base_url="http://relayd", connector=connector, headers=API)
