"""The TCP control transport (Windows' default), run here on Linux: a real relayd subprocess
with AGENT_RELAY_CONTROL_TRANSPORT=tcp, real relayctl subprocesses, real loopback sockets."""

from __future__ import annotations

import http.client
import json
import socket
import stat
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from relayctl.main import ExitCode
from relayd import __version__
from relayd.config.settings import SettingsError, load
from tests.helpers import RelaydProcess, cli_env, one_line, relayctl

Start = Callable[..., RelaydProcess]
TCP = {"AGENT_RELAY_CONTROL_TRANSPORT": "tcp"}


@pytest.fixture
def ctl_env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path, **TCP)


def listen_file(tmp_path: Path) -> Path:
    return tmp_path / "run" / "listen.json"


def control_record(tmp_path: Path) -> dict[str, Any]:
    control = json.loads(listen_file(tmp_path).read_text())["control"]
    assert isinstance(control, dict)
    return control


def control_get(
    port: int, headers: dict[str, str], path: str = "/v1/status"
) -> tuple[int, dict[str, Any], http.client.HTTPResponse]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read()), response
    finally:
        conn.close()


def failed_start(relayd_process: Start, **kwargs: Any) -> RelaydProcess:
    relayd = relayd_process(expect_serving=False, **kwargs)
    assert relayd.wait(15) != 0
    assert "Traceback" not in relayd.stderr
    return relayd


# ------------------------------------------------------------------------------ tests


def free_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_control_transport_setting_is_checked(relayd_process: Start, tmp_path: Path) -> None:
    config = tmp_path / "empty.toml"
    config.write_text("")
    env = {"AGENT_RELAY_CONTROL_TRANSPORT": " TCP "}
    assert load(config=config, env=env).control_transport == "tcp"
    with pytest.raises(SettingsError, match=r"control_transport .*must be unix or tcp"):
        load(config=config, env={"AGENT_RELAY_CONTROL_TRANSPORT": "pipe"})
    relayd = failed_start(relayd_process, env={"AGENT_RELAY_CONTROL_PORT": "70000"})
    assert relayd.proc is not None and relayd.proc.returncode == 2
    assert "invalid control_port (environment AGENT_RELAY_CONTROL_PORT)" in relayd.stderr


def test_listen_json_is_private_and_holds_port_and_token(
    relayd_process: Start, tmp_path: Path
) -> None:
    port = free_port()
    relayd = relayd_process(env={**TCP, "AGENT_RELAY_CONTROL_PORT": str(port)})
    record = json.loads(listen_file(tmp_path).read_text())
    assert stat.S_IMODE(listen_file(tmp_path).stat().st_mode) == 0o600
    assert stat.S_IMODE(listen_file(tmp_path).parent.stat().st_mode) == 0o700
    assert record["pid"] == relayd.proc.pid  # type: ignore[union-attr]
    assert record["url"] == relayd.url  # the HTTP API's address is still recorded as before
    control = record["control"]
    assert control["transport"] == "tcp" and control["host"] == "127.0.0.1"
    assert control["port"] == port
    assert len(control["token"]) >= 40
    assert not (tmp_path / "run" / "relayd.sock").exists()  # no Unix socket on this transport


def test_relayctl_commands_work_through_tcp(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    assert relayctl(ctl_env, "setup", "--yes").returncode == 0
    relayd = relayd_process(env=TCP)
    port = control_record(tmp_path)["port"]
    status = relayctl(ctl_env, "status")
    assert status.returncode == 0, status.stderr
    assert f"is running (pid {relayd.proc.pid})" in status.stdout  # type: ignore[union-attr]
    assert f"tcp://127.0.0.1:{port}" in status.stdout
    logs = relayctl(ctl_env, "logs", "-n", "5")
    assert logs.returncode == 0, logs.stderr
    assert 1 <= len(logs.stdout.strip().splitlines()) <= 5
    rotated = relayctl(ctl_env, "token", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert json.loads(rotated.stdout)["live"] is True
    assert json.loads(rotated.stdout)["token"] == tomllib.loads(
        (tmp_path / "config.toml").read_text())["token"]
    backup = relayctl(ctl_env, "backup", str(tmp_path / "copy.db"))
    assert backup.returncode == 0, backup.stderr
    assert (tmp_path / "copy.db").stat().st_size > 0


def test_a_unix_relayctl_follows_the_tcp_record(
    ctl_env: dict[str, str], relayd_process: Start
) -> None:
    relayd = relayd_process(env=TCP)
    unix_env = {k: v for k, v in ctl_env.items() if k != "AGENT_RELAY_CONTROL_TRANSPORT"}
    status = relayctl(unix_env, "status", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["pid"] == relayd.proc.pid  # type: ignore[union-attr]


def test_token_origin_and_bind_address(relayd_process: Start, tmp_path: Path) -> None:
    relayd_process(env=TCP)
    control = control_record(tmp_path)
    port, token = control["port"], control["token"]
    status, body, response = control_get(port, {})
    assert (status, body["code"]) == (401, "unauthorized")
    assert response.getheader("X-Agent-Relay-Version") == __version__
    assert control_get(port, {"Authorization": f"Bearer {token[:-1]}x"})[0] == 401
    assert control_get(port, {"Authorization": token})[0] == 401  # the scheme is required
    status, body, _ = control_get(port, {"Authorization": f"Bearer {token}",
                                         "Origin": "http://evil.example"})
    assert (status, body["code"]) == (403, "forbidden")
    status, body, _ = control_get(port, {"Authorization": f"Bearer {token}"})
    assert status == 200 and body["control"]["transport"] == "tcp"
    # the control port listens on 127.0.0.1 only; 127.0.0.2 is loopback too but not bound
    pid = json.loads(listen_file(tmp_path).read_text())["pid"]
    bound = {c.laddr for c in psutil.Process(pid).net_connections("tcp")
             if c.status == psutil.CONN_LISTEN and c.laddr.port == port}
    assert bound == {("127.0.0.1", port)}
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()


def test_wrong_token_in_listen_json_is_one_clear_line(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    relayd_process(env=TCP)
    record = json.loads(listen_file(tmp_path).read_text())
    record["control"]["token"] = "not-the-token"
    listen_file(tmp_path).write_text(json.dumps(record))
    result = relayctl(ctl_env, "status")
    assert result.returncode == ExitCode.FAILURE
    assert "refused the control token" in one_line(result.stderr)


def test_second_relayd_refuses_and_stop_cleans_up(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    first = relayd_process(env=TCP)
    pid = first.proc.pid  # type: ignore[union-attr]
    port = control_record(tmp_path)["port"]
    same_dir = failed_start(relayd_process, env={**TCP, "DB_PATH": str(tmp_path / "b.db")})
    assert f"relayd is already running (pid {pid}, control port 127.0.0.1:{port})" in (
        same_dir.stderr)
    other_dir = str(tmp_path / "run2" / "relayd.sock")
    same_db = failed_start(relayd_process, env={**TCP, "AGENT_RELAY_SOCKET": other_dir})
    assert f"relayd is already running (pid {pid}, database" in same_db.stderr
    assert control_record(tmp_path)["port"] == port  # the live record was left alone
    assert relayctl(ctl_env, "status").returncode == 0
    first.signal(15)
    assert first.wait() == 0
    assert not listen_file(tmp_path).exists()
    down = relayctl(ctl_env, "status")
    assert down.returncode == ExitCode.NOT_RUNNING
    assert "relayd is not running (no control port recorded in" in one_line(down.stdout)


def test_stale_record_of_a_crashed_relayd(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    dead_port = free_port()
    listen_file(tmp_path).parent.mkdir(mode=0o700)
    stale = {"pid": 999_999, "control": {"transport": "tcp", "host": "127.0.0.1",
                                         "port": dead_port, "token": "old"}}
    listen_file(tmp_path).write_text(json.dumps(stale))
    down = relayctl(ctl_env, "status")
    assert down.returncode == ExitCode.NOT_RUNNING
    assert f"nothing listens on control port 127.0.0.1:{dead_port}" in one_line(down.stdout)
    relayd = relayd_process(env=TCP)  # the stale record does not block a start
    assert relayd.proc is not None
    assert json.loads(listen_file(tmp_path).read_text())["pid"] == relayd.proc.pid
