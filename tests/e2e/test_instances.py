"""Relays of different databases coexist on one machine, even when neither names a socket:
the first takes the default control socket, the next moves to a per-database one, and
relayctl finds each through its database. A relayd of the same database still refuses."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from relayctl.main import ExitCode
from tests.helpers import RelaydProcess, cli_env, relayctl


def _relayd_without_socket(tmp_path: Path, runtime: Path, name: str) -> RelaydProcess:
    process = RelaydProcess(tmp_path / name, {"XDG_RUNTIME_DIR": str(runtime)})
    process.env.pop("AGENT_RELAY_SOCKET")  # the default socket, as a plain `relayd` would
    return process


def test_relays_of_two_databases_coexist_and_a_third_of_the_first_refuses(
    tmp_path: Path,
) -> None:
    runtime = Path(tempfile.mkdtemp(prefix="ar-"))  # short: AF_UNIX paths are capped
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    first = _relayd_without_socket(tmp_path, runtime, "a")
    second = _relayd_without_socket(tmp_path, runtime, "b")
    same_db = _relayd_without_socket(tmp_path, runtime, "c")
    same_db.env["DB_PATH"] = first.env["DB_PATH"]
    try:
        first.start()
        second.start()
        assert (runtime / "agent-relay" / "relayd.sock").exists()
        for process in (first, second):
            env = cli_env(tmp_path, DB_PATH=process.env["DB_PATH"], XDG_RUNTIME_DIR=str(runtime))
            env.pop("AGENT_RELAY_SOCKET")
            env["AGENT_RELAY_CONFIG"] = process.env["AGENT_RELAY_CONFIG"]
            status = relayctl(env, "status", "--json")
            assert status.returncode == ExitCode.OK, status.stdout + status.stderr
            assert json.loads(status.stdout)["pid"] == process.proc.pid  # type: ignore[union-attr]
        same_db.start(expect_serving=False)
        assert same_db.wait(15) != 0
        assert "already running" in same_db.stderr
    finally:
        for process in (same_db, second, first):
            process.stop()
        shutil.rmtree(runtime, ignore_errors=True)
