"""`relayctl migrate-db --to postgresql://…` copies a SQLite relay; relayd then serves it."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import pg
from tests.helpers import RelaydProcess, cli_env, relayctl


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(
        f"{base}/api{path}", method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read() or b"null")


@pytest.fixture
def db_url() -> Iterator[str]:
    pg.require_server()
    url: str = asyncio.run(pg.fresh_database())
    yield url
    asyncio.run(pg.release_database(url))


def test_migrate_db_copies_everything_and_ids_keep_growing(
    tmp_path: Path, db_url: str, relayd_process: Callable[..., RelaydProcess]
) -> None:
    relay = relayd_process()
    base = relay.url
    assert base is not None
    call(base, "POST", "/agents", {"id": "ann", "tags": ["t"]})
    call(base, "POST", "/agents", {"id": "bea"})
    everyone = call(base, "POST", "/messages", {"from": "ci", "to": "broadcast", "body": "all"})
    sent = [call(base, "POST", "/messages", {"from": "ci", "to": "ann", "body": f"m{n}"})
            for n in range(5)]
    call(base, "PATCH", f"/messages/{sent[0]['id']}", {"agent": "ann", "read": True})
    call(base, "DELETE", f"/messages/{sent[-1]['id']}")  # the newest id is gone, not reusable
    pair = call(base, "POST", "/pairs", {"from": "ann", "to": "id:bea"})
    before = call(base, "GET", "/messages?for=ann")["messages"]
    assert relay.stop() == 0

    env = cli_env(tmp_path)
    done = relayctl(env, "migrate-db", "--to", db_url, "--from", str(relay.db_path), "--json")
    assert done.returncode == 0, done.stderr
    tables = json.loads(done.stdout)["tables"]
    assert tables["messages"] == {"sqlite": 6, "postgresql": 6}  # 5 sends + the pair invite
    assert tables["audience_members"] == {"sqlite": 2, "postgresql": 2}  # the broadcast's
    assert all(n["sqlite"] == n["postgresql"] for n in tables.values())
    again = relayctl(env, "migrate-db", "--to", db_url, "--from", str(relay.db_path))
    assert again.returncode == 1 and "not empty" in again.stderr

    moved = relayd_process(env={"DB_URL": db_url})
    assert moved.url is not None
    assert call(moved.url, "GET", "/messages?for=ann")["messages"] == before
    assert everyone["id"] in [m["id"] for m in call(moved.url, "GET", "/messages?for=bea")[
        "messages"]]  # a shared audience, copied
    assert call(moved.url, "GET", f"/pairs/{pair['id']}")["status"] == "pending"
    fresh = call(moved.url, "POST", "/messages", {"from": "ci", "to": "ann", "body": "new"})
    assert fresh["id"] > sent[-1]["id"]


def test_migrate_db_refuses_a_url_that_is_not_postgresql(tmp_path: Path) -> None:
    done = relayctl(cli_env(tmp_path), "migrate-db", "--to", "mysql://x/y")
    assert done.returncode == 2 and "postgresql://" in done.stderr
