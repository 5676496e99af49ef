"""Secure defaults on the local machine (contract §10): private files, backups that never
follow a link or overwrite a file, and storage honesty. Real relayd subprocesses and sockets."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.helpers import RelaydProcess, cli_env, relayctl

Start = Callable[..., RelaydProcess]


def call(url: str, method: str = "GET", body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            raw = resp.read()
            return resp.status, json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw else None


def send(proc: RelaydProcess, body: str) -> tuple[int, Any]:
    return call(f"{proc.api}/messages", "POST", {"from": "alice", "to": "bob", "body": body})


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def start_relay(relayd_process: Start, tmp_path: Path, **env: str) -> RelaydProcess:
    proc = relayd_process(env={"STALE_TTL_MS": "600000", **env})
    assert call(f"{proc.api}/agents", "POST", {"id": "bob"})[0] == 201
    return proc


# ----------------------------------------------------------------------------- file modes


def test_relayd_creates_private_files_whatever_the_umask(
    relayd_process: Start, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    logs = tmp_path / "logs"
    old = os.umask(0o022)  # relayd inherits a permissive umask and still creates 0600/0700
    try:
        proc = start_relay(relayd_process, tmp_path, DB_PATH=str(data / "relay.db"),
                           AGENT_RELAY_LOG_FILE=str(logs / "relayd.log"))
    finally:
        os.umask(old)
    assert send(proc, "hello")[0] == 201
    backup = tmp_path / "copy.db"
    result = relayctl(cli_env(tmp_path), "backup", str(backup))
    assert result.returncode == 0, result.stderr
    assert mode(data) == 0o700 and mode(logs) == 0o700
    for path in (data / "relay.db", data / "relay.db-wal", data / "relay.db-shm",
                 data / "relay.db.lock", logs / "relayd.log", backup):
        assert mode(path) == 0o600, path
    proc.stop()


def test_relayd_tightens_an_existing_world_readable_database(
    relayd_process: Start, tmp_path: Path
) -> None:
    db = tmp_path / "relay.db"
    sqlite3.connect(db).close()
    os.chmod(db, 0o644)
    proc = start_relay(relayd_process, tmp_path)
    assert mode(db) == 0o600
    proc.stop()


def test_setup_writes_private_config_and_data_dir(tmp_path: Path) -> None:
    env = cli_env(tmp_path, AGENT_RELAY_CONFIG=str(tmp_path / "cfg" / "config.toml"))
    old = os.umask(0o022)
    try:
        result = relayctl(env, "setup", "--yes")
    finally:
        os.umask(old)
    assert result.returncode == 0, result.stderr
    assert mode(tmp_path / "cfg") == 0o700
    assert mode(tmp_path / "cfg" / "config.toml") == 0o600
    assert mode(tmp_path / "xdg-data" / "agent-relay") == 0o700


# ----------------------------------------------------------------------------- backups


def test_backup_refuses_a_planted_symlink_and_an_existing_file(
    relayd_process: Start, tmp_path: Path
) -> None:
    proc = start_relay(relayd_process, tmp_path)
    env = cli_env(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    os.chmod(victim, 0o644)
    link = tmp_path / "backup.db"
    link.symlink_to(victim)
    refused = relayctl(env, "backup", str(link))
    assert refused.returncode == 1
    assert "symbolic link" in refused.stderr and "\n" not in refused.stderr.strip()
    assert victim.read_text() == "precious\n" and mode(victim) == 0o644
    assert link.is_symlink() and os.readlink(link) == str(victim)
    dangling = tmp_path / "dangling.db"
    dangling.symlink_to(tmp_path / "would-be-created.db")
    assert relayctl(env, "backup", str(dangling)).returncode == 1
    assert not (tmp_path / "would-be-created.db").exists()

    existing = tmp_path / "existing.db"
    existing.write_text("not a backup\n")
    refused = relayctl(env, "backup", str(existing))
    assert refused.returncode == 1 and "already there" in refused.stderr
    assert existing.read_text() == "not a backup\n"
    # nothing left behind in the target directory
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    fresh = relayctl(env, "backup", str(tmp_path / "fresh.db"))
    assert fresh.returncode == 0, fresh.stderr
    # a second backup onto the first one is refused too: a backup never overwrites
    assert relayctl(env, "backup", str(tmp_path / "fresh.db")).returncode == 1
    proc.stop()


# ----------------------------------------------------------------------------- storage honesty


def _assert_refusing(proc: RelaydProcess, words: str) -> None:
    status, answer = send(proc, "must not be acknowledged")
    assert status == 503 and answer["code"] == "unavailable", answer
    assert words in answer["error"]
    status, health = call(f"{proc.api}/health")
    assert status == 503 and health["code"] == "unavailable"
    assert words in health["error"]


def _message_ids(db: Path) -> set[int]:
    with sqlite3.connect(db) as conn:
        return {row[0] for row in conn.execute("SELECT id FROM messages")}


def test_a_deleted_database_refuses_writes_and_loses_no_acknowledged_message(
    relayd_process: Start, tmp_path: Path
) -> None:
    proc = start_relay(relayd_process, tmp_path)
    db = proc.db_path
    acked = set()
    for n in range(20):
        status, message = send(proc, f"before {n}")
        assert status == 201
        acked.add(message["id"])
    keep = tmp_path / "kept.db"
    os.link(db, keep)  # the inode survives, so we can see what it holds afterwards
    db.unlink()
    for _ in range(5):
        _assert_refusing(proc, "deleted")
    assert call(f"{proc.api}/agents", "POST", {"id": "carol"})[0] == 503
    assert proc.logged("refusing writes"), proc.stderr
    # What the orphaned inode holds (database + its WAL, copied while relayd still has them)
    snapshot = tmp_path / "snapshot.db"
    shutil.copyfile(keep, snapshot)
    shutil.copyfile(f"{db}-wal", f"{snapshot}-wal")
    assert _message_ids(snapshot) == acked  # every 201 is there, no 503 write slipped in
    assert proc.stop() == 0
    os.replace(snapshot, db)  # the operator restores it; relayd serves it again
    restart = relayd_process(env={"STALE_TTL_MS": "600000"})
    assert call(f"{restart.api}/health")[0] == 200
    for message_id in acked:
        assert call(f"{restart.api}/messages/{message_id}")[0] == 200
    restart.stop()


def test_a_replaced_database_refuses_writes(relayd_process: Start, tmp_path: Path) -> None:
    proc = start_relay(relayd_process, tmp_path)
    assert send(proc, "before")[0] == 201
    other = tmp_path / "other.db"
    shutil.copyfile(proc.db_path, other)
    os.replace(other, proc.db_path)
    _assert_refusing(proc, "replaced")
    proc.stop()


def test_an_unwritable_database_refuses_writes_until_writable_again(
    relayd_process: Start, tmp_path: Path
) -> None:
    proc = start_relay(relayd_process, tmp_path)
    assert send(proc, "before")[0] == 201
    os.chmod(proc.db_path, 0o400)
    try:
        _assert_refusing(proc, "not writable")
    finally:
        os.chmod(proc.db_path, 0o600)
    assert send(proc, "after")[0] == 201
    assert call(f"{proc.api}/health")[0] == 200
    assert "usable again" in proc.stderr
    proc.stop()


def test_a_deleted_wal_refuses_writes(relayd_process: Start, tmp_path: Path) -> None:
    proc = start_relay(relayd_process, tmp_path)
    assert send(proc, "before")[0] == 201
    Path(f"{proc.db_path}-wal").unlink()
    _assert_refusing(proc, "WAL")
    proc.stop()
