"""Three relayd processes on one PostgreSQL act as one relay (API-CONTRACT section 12).

Real subprocesses on free loopback ports, one fresh PostgreSQL schema shared by the replicas
of a test; the restart test runs its own throwaway server (.ci/start-postgres).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests import pg
from tests.helpers import RelaydProcess

ROOT = Path(__file__).resolve().parents[2]
START_PG = ROOT / ".ci" / "start-postgres"
INTEGRATION = {"name": "ci", "token": "ci-token-123456", "scopes": ["tasks:write"]}


@dataclass
class SseEvent:
    id: int
    type: str
    data: Any


class Sse:
    """One open /api/events stream and its parsed events."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response
        self.comments = 0

    async def next(self, timeout: float = 10.0) -> SseEvent:
        fields: dict[str, str] = {}
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), timeout)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\r\n")
            if line.startswith(":"):
                self.comments += 1
            elif line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
            elif "id" in fields:
                return SseEvent(int(fields["id"]), fields["event"], json.loads(fields["data"]))

    async def take(self, count: int, kind: str | None = None) -> list[SseEvent]:
        events: list[SseEvent] = []
        while len(events) < count:
            event = await self.next()
            if kind is None or event.type == kind:
                events.append(event)
        return events


def start_replicas(tmp: Path, db_url: str, count: int, **env: str) -> list[RelaydProcess]:
    replicas = []
    for index in range(count):
        home = tmp / f"replica{index}"
        home.mkdir()
        replicas.append(RelaydProcess(home, {
            "DB_URL": db_url, "AGENT_RELAY_INTEGRATIONS": json.dumps([INTEGRATION]),
            "AGENT_RELAY_SSE_KEEPALIVE_SECONDS": "0.5", **env,
        }))
    for replica in replicas:
        replica.start(timeout=30)
    return replicas


@contextlib.contextmanager
def replica_set(tmp: Path) -> Iterator[list[RelaydProcess]]:
    pg.require_server()
    url: str = asyncio.run(pg.fresh_database())
    replicas: list[RelaydProcess] = []
    try:
        replicas = start_replicas(tmp, url, 3, REAP_INTERVAL_MS="200")
        yield replicas
    finally:
        for replica in replicas:
            replica.stop()
        asyncio.run(pg.release_database(url))


@pytest.fixture(scope="module")
def shared_trio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[RelaydProcess]]:
    """Three replicas for the tests that leave them running (each uses its own agent ids)."""
    with replica_set(tmp_path_factory.mktemp("trio")) as replicas:
        yield replicas


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[list[RelaydProcess]]:
    """Three replicas of this test's own (it kills one)."""
    with replica_set(tmp_path) as replicas:
        yield replicas


async def clients(replicas: list[RelaydProcess]) -> list[aiohttp.ClientSession]:
    return [aiohttp.ClientSession(base_url=r.url) for r in replicas]


@pytest.fixture
async def sessions(shared_trio: list[RelaydProcess]
                   ) -> AsyncIterator[list[aiohttp.ClientSession]]:
    opened = await clients(shared_trio)
    yield opened
    for session in opened:
        await session.close()


@pytest.fixture
async def own_sessions(trio: list[RelaydProcess]) -> AsyncIterator[list[aiohttp.ClientSession]]:
    opened = await clients(trio)
    yield opened
    for session in opened:
        await session.close()


async def post(http: aiohttp.ClientSession, path: str, body: dict[str, Any],
               **headers: str) -> tuple[int, Any]:
    async with http.post(path, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


async def open_stream(http: aiohttp.ClientSession, last_id: int | None = None) -> Sse:
    headers = {} if last_id is None else {"Last-Event-ID": str(last_id)}
    resp = await http.get("/api/events", headers=headers, timeout=aiohttp.ClientTimeout(None))
    assert resp.status == 200
    return Sse(resp)


async def test_sse_order_and_resume_across_replicas(sessions: list[aiohttp.ClientSession]
                                                    ) -> None:
    a, b, c = sessions
    await post(a, "/api/agents", {"id": "sse-sink"})
    streams = [await open_stream(a), await open_stream(b)]
    for n in range(30):  # sends spread over the three replicas, some at once
        await asyncio.gather(*(post(s, "/api/messages", {"from": f"r{i}", "to": "sse-sink",
                                                           "body": f"{n}-{i}"})
                               for i, s in enumerate(sessions)))
    seen = [await stream.take(90, "message.new") for stream in streams]
    ids = [[e.id for e in events] for events in seen]
    assert ids[0] == ids[1] == sorted(ids[0]) and len(set(ids[0])) == 90  # one order everywhere
    resumed = await open_stream(c, last_id=ids[0][59])  # resume on a third replica
    rest = await resumed.take(30, "message.new")
    assert [e.id for e in rest] == ids[0][60:]
    for stream in [*streams, resumed]:
        stream.response.close()


async def test_claim_race_over_replicas_has_one_winner(sessions: list[aiohttp.ClientSession]
                                                       ) -> None:
    racers = [f"racer-{n}" for n in range(30)]
    for n, racer in enumerate(racers):
        await post(sessions[n % 3], "/api/agents", {"id": racer, "tags": ["race"]})
    status, message = await post(sessions[0], "/api/messages", {
        "from": "ci", "to": "tag:race", "body": "one of you", "claimable": True})
    assert status == 201 and len(message["recipients"]) == 30
    results = await asyncio.gather(*(
        post(sessions[n % 3], f"/api/messages/{message['id']}/claim", {"agent": racer})
        for n, racer in enumerate(racers)))
    winners = [body["claimedBy"] for status, body in results if status == 200]
    losers = [body for status, body in results if status == 409]
    assert len(winners) == 1 and len(losers) == 29
    assert all(body["code"] == "already_claimed" and body["claimedBy"] == winners[0]
               for body in losers)


async def test_idempotency_dedupe_and_pairs_across_replicas(
    sessions: list[aiohttp.ClientSession],
) -> None:
    a, b, c = sessions
    await post(a, "/api/agents", {"id": "ann", "tags": ["t"]})
    await post(b, "/api/agents", {"id": "bea", "label": "bea"})
    sends = await asyncio.gather(*(
        post(s, "/api/messages", {"from": "ci", "to": "ann", "body": "once"},
             **{"Idempotency-Key": "same-key"}) for s in sessions))
    assert sorted(status for status, _ in sends) == [200, 200, 201]  # one send, two replays
    assert len({body["id"] for _, body in sends}) == 1
    async with c.get("/api/messages?for=ann") as resp:
        assert len((await resp.json())["messages"]) == 1
    token = {"Authorization": f"Bearer {INTEGRATION['token']}"}
    event = {"type": "alert", "title": "disk full", "target": "tag:t", "dedupeKey": "disk"}
    answers = await asyncio.gather(*(post(s, "/api/integrations/events", event, **token)
                                     for s in sessions))
    tasks = {body["task"]["id"] for _, body in answers}
    assert len(tasks) == 1 and sorted(s for s, _ in answers) == [200, 200, 201]
    async with a.get(f"/api/tasks/{tasks.pop()}") as resp:
        assert (await resp.json())["occurrenceCount"] == 3
    status, pair = await post(a, "/api/pairs", {"from": "ann", "to": "id:bea"})
    assert status == 201
    status, busy = await post(c, "/api/pairs", {"from": "bea", "to": "id:ann"})
    assert status == 409 and busy["code"] == "busy"
    status, accepted = await post(b, f"/api/pairs/{pair['id']}/accept", {"agent": "bea"})
    assert status == 200 and accepted["status"] == "active"
    status, sent = await post(c, f"/api/pairs/{pair['id']}/messages", {"from": "ann",
                                                                        "body": "hi"})
    assert status == 201 and sent["recipients"] == ["bea"]


async def job_holders(sessions: list[aiohttp.ClientSession], job: str) -> list[int]:
    holders = []
    for index, session in enumerate(sessions):
        try:
            async with session.get("/api/stats") as resp:
                if job in (await resp.json())["replica"]["jobs"]:
                    holders.append(index)
        except aiohttp.ClientError:
            pass
    return holders


async def test_stopped_and_killed_replicas_lose_nothing_and_jobs_move(
    trio: list[RelaydProcess], own_sessions: list[aiohttp.ClientSession],
) -> None:
    sessions = own_sessions
    await post(sessions[0], "/api/agents", {"id": "sink"})
    deadline = time.monotonic() + 10
    while not (holders := await job_holders(sessions, "reaper:agents")):
        assert time.monotonic() < deadline, "no replica took the reaper job"
        await asyncio.sleep(0.2)
    assert len(holders) == 1  # the reaper runs once, not once per replica
    victim = holders[0]
    acknowledged: list[int] = []
    enough = asyncio.Event()  # 50 sends acknowledged: time to kill

    async def load(session: aiohttp.ClientSession) -> None:
        for n in range(400):
            try:
                status, body = await post(session, "/api/messages",
                                          {"from": "load", "to": "sink", "body": str(n)})
            except (TimeoutError, aiohttp.ClientError):
                return  # the replica died under us
            if status == 201:
                acknowledged.append(body["id"])
                if len(acknowledged) >= 50:
                    enough.set()

    loads = [asyncio.create_task(load(sessions[victim])) for _ in range(8)]
    await asyncio.wait_for(enough.wait(), 60)
    trio[victim].signal(signal.SIGKILL)  # mid-load
    await asyncio.gather(*loads)
    survivors = [s for i, s in enumerate(sessions) if i != victim]
    found: set[int] = set()
    cursor = 0
    while True:
        async with survivors[0].get(f"/api/messages?for=sink&since={cursor}&limit=1000") as r:
            page = (await r.json())["messages"]
        if not page:
            break
        found.update(m["id"] for m in page)
        cursor = page[-1]["id"]
    assert set(acknowledged) <= found, "an acknowledged message was lost"
    deadline = time.monotonic() + 15  # its advisory lock died with it: another takes over
    while not (holders := await job_holders(survivors, "reaper:agents")):
        assert time.monotonic() < deadline, "no surviving replica took over the reaper"
        await asyncio.sleep(0.2)
    assert len(holders) == 1
    alive = [r for i, r in enumerate(trio) if i != victim]
    assert alive[0].stop() == 0  # a clean stop; the last replica keeps serving
    status, _ = await post(survivors[1], "/api/messages", {"from": "x", "to": "sink",
                                                             "body": "still here"})
    assert status == 201


def test_database_down_at_start_is_one_line_and_exit_4(tmp_path: Path) -> None:
    env = {**os.environ, "DB_URL": "postgresql://nobody@127.0.0.1:9/none", "PORT": "0",
           "DB_PATH": str(tmp_path / "relay.db"), "AGENT_RELAY_CONFIG": str(tmp_path / "c.toml"),
           "AGENT_RELAY_SOCKET": str(tmp_path / "run" / "s.sock"), "XDG_RUNTIME_DIR": str(tmp_path)}
    (tmp_path / "c.toml").write_text("")
    done = subprocess.run([sys.executable, "-m", "relayd.main"], env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert done.returncode == 4, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("relayd:")]
    assert len(lines) == 1 and "cannot reach the database" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def own_server() -> Iterator[Callable[[str], None]]:
    """A PostgreSQL of this test's own, so it can be stopped and started again."""
    pg.require_server()
    out = subprocess.run(["bash", str(START_PG)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    values = dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines())
    directory = values["AGENT_RELAY_TEST_PG_DIR"]

    def control(action: str) -> None:
        if action == "url":
            raise ValueError
        subprocess.run(["bash", str(START_PG), f"--{action}", directory], check=True,
                       capture_output=True, timeout=120)

    control.url = values["AGENT_RELAY_TEST_PG_URL"]  # type: ignore[attr-defined]
    yield control
    subprocess.run(["bash", str(START_PG), "--stop", directory], capture_output=True,
                   timeout=120)


async def test_postgresql_restarted_under_a_running_relay(
    tmp_path: Path, own_server: Callable[[str], None]
) -> None:
    url = own_server.url  # type: ignore[attr-defined]
    replica = start_replicas(tmp_path, url, 1)[0]
    try:
        async with aiohttp.ClientSession(base_url=replica.url) as http:
            await post(http, "/api/agents", {"id": "sink"})
            stream = await open_stream(http)
            status, before = await post(http, "/api/messages", {"from": "a", "to": "sink",
                                                                  "body": "before"})
            assert status == 201
            assert (await stream.take(1, "message.new"))[0].data["id"] == before["id"]
            own_server("pause")
            status, body = await post(http, "/api/messages", {"from": "a", "to": "sink",
                                                                "body": "while down"})
            assert status == 503 and body["code"] == "unavailable"
            async with http.get("/api/health") as resp:
                assert resp.status == 503
            comments = stream.comments
            await asyncio.sleep(1.2)
            own_server("resume")
            deadline = time.monotonic() + 30
            while True:  # recovers by itself
                async with http.get("/api/health") as resp:
                    if resp.status == 200:
                        break
                assert time.monotonic() < deadline, "the relay did not recover"
                await asyncio.sleep(0.2)
            status, after = await post(http, "/api/messages", {"from": "a", "to": "sink",
                                                                 "body": "after"})
            assert status == 201
            event = (await stream.take(1, "message.new"))[0]  # the same stream, still open
            assert event.data["id"] == after["id"] and stream.comments > comments
            stream.response.close()
    finally:
        assert replica.stop() == 0
