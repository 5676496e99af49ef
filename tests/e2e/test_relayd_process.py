"""`relayd` as a real child process: port selection, signals, crash durability, bind safety,
setting errors and the reaper."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd.config import settings as settings_mod
from relayd.config.settings import SettingsError
from tests.helpers import RelaydProcess

Start = Callable[..., RelaydProcess]


async def post(session: aiohttp.ClientSession, url: str, payload: dict[str, Any]) -> Any:
    async with session.post(url, json=payload) as resp:
        assert resp.status in (200, 201), await resp.text()
        return await resp.json()


async def test_port_zero_picks_a_free_port_and_logs_it(relayd_process: Start) -> None:
    relay = relayd_process()
    match = re.search(r"serving on http://127\.0\.0\.1:(\d+)", relay.stderr)
    assert match and int(match.group(1)) > 0
    async with aiohttp.ClientSession() as http, http.get(relay.api + "/health") as resp:
        assert resp.status == 200
        assert (await resp.json())["status"] == "ok"


async def test_sigterm_ends_streams_and_long_polls_and_exits_0(relayd_process: Start) -> None:
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        await post(http, relay.api + "/agents", {"id": "bob"})
        async with http.get(relay.api + "/events") as stream:
            assert (await stream.content.readline()).startswith(b":")
            poll = asyncio.create_task(
                http.get(relay.api + "/messages", params={"for": "bob", "since": 1, "wait": 30})
            )
            await asyncio.sleep(0.3)
            assert not poll.done()
            started = time.monotonic()
            relay.signal(signal.SIGTERM)
            rest = await asyncio.wait_for(stream.content.read(), 5)
            assert b"data:" not in rest
            answer = await asyncio.wait_for(poll, 5)
            assert answer.status in (200, 503)
        assert time.monotonic() - started < 5
    assert await asyncio.to_thread(relay.wait, 10) == 0
    assert "relayd stopped" in relay.stderr


async def test_sigterm_finishes_the_writes_in_flight(relayd_process: Start) -> None:
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        await post(http, relay.api + "/agents", {"id": "bob"})

        async def keep_sending(worker: int) -> list[tuple[int, Any]]:
            answers = []
            for i in range(100_000):
                payload = {"from": "ci", "to": "bob", "body": f"{worker}-{i}"}
                try:
                    async with http.post(relay.api + "/messages", json=payload) as resp:
                        answers.append((resp.status, await resp.json()))
                except aiohttp.ClientError:
                    break  # refused once the relay stopped accepting
            return answers

        workers = [asyncio.create_task(keep_sending(w)) for w in range(20)]
        await asyncio.sleep(0.3)
        relay.signal(signal.SIGTERM)
        answers = [a for batch in await asyncio.gather(*workers) for a in batch]
    assert await asyncio.to_thread(relay.wait, 10) == 0
    assert {status for status, _ in answers} <= {201, 503}
    acknowledged = {body["id"] for status, body in answers if status == 201}
    assert len(acknowledged) > 20
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        params: dict[str, str | int] = {"for": "bob", "limit": 1000}
        async with http.get(relay.api + "/messages", params=params) as resp:
            stored = {m["id"] for m in (await resp.json())["messages"]}
            cursor = (await resp.json())["cursor"]
        while cursor < max(acknowledged):
            params["since"] = cursor
            async with http.get(relay.api + "/messages", params=params) as resp:
                page = await resp.json()
            if not page["messages"]:
                break
            stored |= {m["id"] for m in page["messages"]}
            cursor = page["cursor"]
    assert acknowledged <= stored


async def test_sigint_exits_0(relayd_process: Start) -> None:
    relay = relayd_process()
    relay.signal(signal.SIGINT)
    assert await asyncio.to_thread(relay.wait, 10) == 0
    assert "Traceback" not in relay.stderr


async def test_acknowledged_messages_survive_kill_9(relayd_process: Start) -> None:
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        await post(http, relay.api + "/agents", {"id": "bob"})
        single = await post(http, relay.api + "/messages", {"from": "ci", "to": "bob", "body": "1"})
        assert relay.proc is not None
        relay.proc.kill()
        relay.wait(5)
    relay = relayd_process()
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{relay.api}/messages/{single['id']}") as resp,
    ):
        assert resp.status == 200
        assert (await resp.json())["body"] == "1"


async def test_a_burst_of_acknowledged_messages_survives_kill_9(relayd_process: Start) -> None:
    relay = relayd_process()
    connector = aiohttp.TCPConnector(limit=200)
    async with aiohttp.ClientSession(connector=connector) as http:
        await post(http, relay.api + "/agents", {"id": "bob"})
        url = relay.api + "/messages"
        sends = [post(http, url, {"from": "ci", "to": "bob", "body": f"m{i}"}) for i in range(200)]
        acknowledged = [m["id"] for m in await asyncio.gather(*sends)]
        assert relay.proc is not None
        relay.proc.kill()  # right after the last 201: no graceful shutdown
        relay.wait(5)
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        params: dict[str, str | int] = {"for": "bob", "limit": 1000}
        async with http.get(relay.api + "/messages", params=params) as resp:
            stored = {m["id"] for m in (await resp.json())["messages"]}
    assert len(acknowledged) == 200
    assert set(acknowledged) <= stored


async def test_a_retry_after_a_lost_answer_returns_the_original(relayd_process: Start) -> None:
    """The send committed, the answer was lost in a crash: the retry must not send twice."""
    payload = {"from": "ci", "to": "bob", "body": "deploy"}
    headers = {"Idempotency-Key": "deploy-42"}
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        await post(http, relay.api + "/agents", {"id": "bob"})
        async with http.post(relay.api + "/messages", json=payload, headers=headers) as resp:
            original = await resp.json()
        assert relay.proc is not None
        relay.proc.kill()
        relay.wait(5)
    relay = relayd_process()
    async with aiohttp.ClientSession() as http:
        async with http.post(relay.api + "/messages", json=payload, headers=headers) as resp:
            assert resp.status == 200
            assert (await resp.json())["id"] == original["id"]
        async with http.get(relay.api + "/messages", params={"for": "bob"}) as resp:
            assert [m["body"] for m in (await resp.json())["messages"]] == ["deploy"]


def test_flags_choose_port_and_database(relayd_process: Start, tmp_path: Path) -> None:
    database = tmp_path / "elsewhere" / "flags.db"
    relay = relayd_process(env={"PORT": "1"}, args=["--port", "0", "--db", str(database)])
    assert relay.url is not None and not relay.url.endswith(":1")
    assert database.exists()
    assert str(database) in relay.stderr


def test_environment_overrides_the_config_file(relayd_process: Start, tmp_path: Path) -> None:
    config = tmp_path / "relay.toml"
    config.write_text(f"port = 1\ndb_path = '{tmp_path / 'from-toml.db'}'\n")
    relay = relayd_process(env={"PORT": "0"}, args=["--config", str(config)])
    assert relay.url is not None and not relay.url.endswith(":1")
    assert not (tmp_path / "from-toml.db").exists(), "DB_PATH from the environment wins"


def test_config_flag_with_a_broken_file(relayd_process: Start, tmp_path: Path) -> None:
    config = tmp_path / "flag.toml"
    config.write_text("[[[")
    relay = relayd_process(args=["--config", str(config)], expect_serving=False)
    assert relay.wait(10) != 0
    lines = relay.stderr.strip().splitlines()
    assert len(lines) == 1 and str(config) in lines[0], relay.stderr


def test_default_database_is_in_the_user_data_directory(tmp_path: Path) -> None:
    relay = RelaydProcess(tmp_path, {"XDG_DATA_HOME": str(tmp_path / "data")})
    del relay.env["DB_PATH"]
    try:
        relay.start()
        databases = list((tmp_path / "data").rglob("*.db"))
        assert len(databases) == 1, relay.stderr
        assert str(databases[0]) in relay.stderr
    finally:
        assert relay.stop() == 0


def test_refuses_a_public_bind_without_token(relayd_process: Start) -> None:
    relay = relayd_process(env={"HOST": "0.0.0.0"}, expect_serving=False)
    assert relay.wait(10) != 0
    lines = relay.stderr.strip().splitlines()
    assert len(lines) == 1, relay.stderr
    assert "AGENT_RELAY_TOKEN" in lines[0] and "0.0.0.0" in lines[0]


@pytest.mark.parametrize(
    "env",
    [
        {"HOST": "0.0.0.0", "AGENT_RELAY_ALLOW_UNAUTH": "1"},
        {"HOST": "0.0.0.0", "AGENT_RELAY_TOKEN": "a-long-secret-token"},
        {"HOST": "::1"},
        {"HOST": "localhost"},
    ],
)
def test_bind_safety_lets_these_start(env: dict[str, str], tmp_path: Path) -> None:
    """Checked in-process: the tests never listen beyond loopback."""
    settings = settings_mod.load(config=_empty_config(tmp_path), env=env)
    settings_mod.check_bind_safety(settings)


def test_bind_safety_refuses_public_hosts(tmp_path: Path) -> None:
    for host in ("0.0.0.0", "::", "192.0.2.10"):
        settings = settings_mod.load(config=_empty_config(tmp_path), env={"HOST": host})
        with pytest.raises(SettingsError, match="AGENT_RELAY_TOKEN"):
            settings_mod.check_bind_safety(settings)


def _empty_config(tmp_path: Path) -> Path:
    config = tmp_path / "empty.toml"
    config.write_text("")
    return config


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PORT": "abc"}, "port"),
        ({"PORT": "70000"}, "port"),
        ({"STALE_TTL_MS": "-5"}, "stale_ttl_ms"),
        ({"AGENT_RELAY_ALLOW_UNAUTH": "perhaps"}, "allow_unauth"),
        ({"AGENT_RELAY_INTEGRATIONS": "[{"}, "integrations"),
    ],
)
def test_invalid_setting_is_one_line_naming_it(
    relayd_process: Start, env: dict[str, str], named: str
) -> None:
    relay = relayd_process(env=env, expect_serving=False)
    assert relay.wait(10) != 0
    lines = relay.stderr.strip().splitlines()
    assert len(lines) == 1, relay.stderr
    assert named in lines[0] and next(iter(env)) in lines[0]


@pytest.mark.parametrize(
    ("toml", "named"),
    [
        ("port = \n", "not valid TOML"),
        ("port = 'abc'\n", "port"),
        ("colour = 'blue'\n", "colour"),
    ],
)
def test_broken_config_file_is_one_line(
    relayd_process: Start, tmp_path: Path, toml: str, named: str
) -> None:
    config = tmp_path / "broken.toml"
    config.write_text(toml)
    relay = relayd_process(env={"AGENT_RELAY_CONFIG": str(config)}, expect_serving=False)
    assert relay.wait(10) != 0
    lines = relay.stderr.strip().splitlines()
    assert len(lines) == 1, relay.stderr
    assert named in lines[0] and str(config) in lines[0]


async def test_reaper_takes_stale_agents_offline_then_removes_them(
    relayd_process: Start,
) -> None:
    relay = relayd_process(
        env={"STALE_TTL_MS": "1000", "OFFLINE_PRUNE_MS": "1000", "REAP_INTERVAL_MS": "100"}
    )
    async with aiohttp.ClientSession() as http:
        async with http.get(relay.api + "/events") as stream:
            assert (await stream.content.readline()).startswith(b":")
            started = time.monotonic()
            await post(http, relay.api + "/agents", {"id": "quiet"})
            events = await _collect(stream, until="agent.removed", timeout=10)
        elapsed = time.monotonic() - started
        async with http.get(relay.api + "/agents/quiet") as resp:
            assert resp.status == 404
    kinds = [(kind, data.get("status")) for kind, data in events]
    assert kinds == [
        ("agent.status", "online"),
        ("agent.status", "offline"),
        ("agent.removed", None),
    ]
    assert 1.5 < elapsed < 10


async def _collect(
    stream: aiohttp.ClientResponse, until: str, timeout: float
) -> list[tuple[str, Any]]:
    events: list[tuple[str, Any]] = []
    kind = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = (await asyncio.wait_for(stream.content.readline(), timeout)).decode().strip()
        if line.startswith("event: "):
            kind = line[7:]
        elif line.startswith("data: "):
            events.append((kind, json.loads(line[6:])))
            if kind == until:
                return events
    raise AssertionError(f"no {until} event in {timeout}s: {events}")
