"""relayctl setup/token/status/logs and relayd's bad-input exits, as real subprocesses."""

from __future__ import annotations

import argparse
import http.server
import json
import signal
import socket
import socketserver
import stat
import subprocess
import threading
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from relayctl.clients.control import connection_error, resolve_socket
from relayctl.main import ExitCode
from tests.helpers import RELAYCTL, RelaydProcess, cli_env, one_line, relayctl

Start = Callable[..., RelaydProcess]


@pytest.fixture
def ctl_env(tmp_path: Path) -> dict[str, str]:
    return cli_env(tmp_path)


def api_status(url: str, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(f"{url}/api/agents", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return exc.code


# ------------------------------------------------------------------------------ setup


def test_setup_writes_a_private_config_and_is_idempotent(
    ctl_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    first = relayctl(ctl_env, "setup", "--yes")
    assert first.returncode == 0, first.stderr
    assert f"wrote {config}" in first.stdout and "relayctl daemon install" in first.stdout
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    written = tomllib.loads(config.read_text())
    assert written["host"] == "127.0.0.1" and written["port"] == 4850
    assert written["db_path"] == str(tmp_path / "xdg-data" / "agent-relay" / "relay.db")
    assert len(written["token"]) >= 40
    assert written["token"] not in first.stdout

    again = relayctl(ctl_env, "setup", "--yes")
    assert again.returncode == 0 and "nothing changed" in again.stdout
    assert tomllib.loads(config.read_text()) == written

    moved = relayctl(ctl_env, "setup", "--yes", "--port", "5123", "--json")
    assert moved.returncode == 0, moved.stderr
    assert '"token"' not in moved.stdout and '"port": 5123' in moved.stdout
    assert tomllib.loads(config.read_text()) == {**written, "port": 5123}
    assert not list(tmp_path.glob(".config.toml.*"))  # no temp file left behind


def test_setup_without_yes_and_without_a_terminal_only_previews(
    ctl_env: dict[str, str], tmp_path: Path
) -> None:
    result = relayctl(ctl_env, "setup")
    assert result.returncode == ExitCode.FAILURE
    assert "rerun with --yes" in result.stderr
    assert not (tmp_path / "config.toml").exists()


def test_setup_refuses_a_broken_config_and_bad_values(
    ctl_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "config.toml"
    config.write_text("port = = 3\n")
    broken = relayctl(ctl_env, "setup", "--yes")
    assert broken.returncode == ExitCode.FAILURE
    assert "is not valid TOML" in one_line(broken.stderr)
    assert config.read_text() == "port = = 3\n"
    config.unlink()
    bad_port = relayctl(ctl_env, "setup", "--yes", "--port", "70000")
    assert bad_port.returncode == ExitCode.USAGE
    assert "invalid port" in one_line(bad_port.stderr)
    assert not config.exists()


# ------------------------------------------------------------------------------ token


def test_token_show_and_rotate_while_down(ctl_env: dict[str, str], tmp_path: Path) -> None:
    missing = relayctl(ctl_env, "token", "show")
    assert missing.returncode == ExitCode.FAILURE and "relayctl setup" in missing.stderr
    assert relayctl(ctl_env, "setup", "--yes").returncode == 0
    token = tomllib.loads((tmp_path / "config.toml").read_text())["token"]
    shown = relayctl(ctl_env, "token", "show")
    assert shown.stdout.strip() == token
    rotated = relayctl(ctl_env, "token", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    new = rotated.stdout.splitlines()[0]
    assert new != token and "not running" in rotated.stdout
    saved = tomllib.loads((tmp_path / "config.toml").read_text())
    assert saved["token"] == new and saved["port"] == 4850


def test_token_rotate_through_the_running_daemon(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    assert relayctl(ctl_env, "setup", "--yes").returncode == 0
    old = tomllib.loads((tmp_path / "config.toml").read_text())["token"]
    relayd = relayd_process()
    assert relayd.url is not None and api_status(relayd.url, old) == 200
    rotated = relayctl(ctl_env, "token", "rotate", "--json")
    assert rotated.returncode == 0, rotated.stderr
    assert '"live": true' in rotated.stdout
    new = tomllib.loads((tmp_path / "config.toml").read_text())["token"]
    assert new in rotated.stdout
    assert api_status(relayd.url, old) == 401
    assert api_status(relayd.url, new) == 200


# ------------------------------------------------------------------------------ status


def test_status_of_a_running_daemon(ctl_env: dict[str, str], relayd_process: Start) -> None:
    relayd = relayd_process()
    human = relayctl(ctl_env, "status")
    assert human.returncode == 0, human.stderr
    assert f"is running (pid {relayd.proc.pid})" in human.stdout  # type: ignore[union-attr]
    assert relayd.url is not None and relayd.url in human.stdout
    as_json = relayctl(ctl_env, "status", "--json")
    assert f'"pid": {relayd.proc.pid}' in as_json.stdout  # type: ignore[union-attr]
    assert '"running": true' in as_json.stdout


def test_status_when_no_socket(ctl_env: dict[str, str], tmp_path: Path) -> None:
    result = relayctl(ctl_env, "status")
    assert result.returncode == ExitCode.NOT_RUNNING
    line = one_line(result.stdout)  # the answer to "status", so on stdout
    # how to start it: `relayd` always; `relayctl daemon start` only where a service is
    # installed and its manager answers (tests/e2e/test_first_hour.py checks both)
    assert "not running (no socket at" in line and "`relayd`" in line
    assert result.stderr == ""


def test_status_names_the_service_state(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    """A fake systemctl on PATH (systemd is not PID 1 here) reporting a failed, enabled unit."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text("#!/bin/sh\nprintf 'ActiveState=failed\\nUnitFileState=enabled\\n'\n")
    fake.chmod(0o755)
    unit_dir = tmp_path / "xdg-config" / "systemd" / "user"
    unit_dir.mkdir(parents=True)
    (unit_dir / "agent-relay.service").write_text("[Service]\nExecStart=/bin/true\n")
    env = {**ctl_env, "PATH": f"{bin_dir}:{ctl_env['PATH']}",
           "AGENT_RELAY_SERVICE_BACKEND": "systemd"}
    down = relayctl(env, "status")
    assert down.returncode == ExitCode.NOT_RUNNING
    assert "(the systemd service is failed)" in one_line(down.stdout)
    relayd_process()
    up = relayctl(env, "status")
    assert up.returncode == 0, up.stderr
    assert "service    systemd: failed, enabled" in up.stdout


def test_status_with_a_stale_socket(ctl_env: dict[str, str], tmp_path: Path) -> None:
    path = Path(ctl_env["AGENT_RELAY_SOCKET"])
    path.parent.mkdir()
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))
    dead.close()
    result = relayctl(ctl_env, "status")
    assert result.returncode == ExitCode.NOT_RUNNING
    assert "stale socket" in one_line(result.stdout)


def test_permission_denied_names_the_owner(tmp_path: Path) -> None:
    error = connection_error(tmp_path / "s.sock", PermissionError(13, "Permission denied"))
    assert error.code == ExitCode.FAILURE
    assert "permission denied" in error.message and f"uid {tmp_path.stat().st_uid}" in error.message


class _Silent(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.release.wait(10)  # type: ignore[attr-defined]


class _OldVersion(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"pid": 1, "version": "0.0.1", "listen": {"url": "http://127.0.0.1:1"}}'
        self.send_response(200)
        self.send_header("X-Agent-Relay-Version", "0.0.1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def fake_control(ctl_env: dict[str, str]) -> Iterator[Callable[[type], None]]:
    servers: list[socketserver.UnixStreamServer] = []

    def serve(handler: type) -> None:
        path = Path(ctl_env["AGENT_RELAY_SOCKET"])
        path.parent.mkdir(exist_ok=True)
        server = socketserver.ThreadingUnixStreamServer(str(path), handler)
        server.release = threading.Event()  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)

    yield serve
    for server in servers:
        server.release.set()  # type: ignore[attr-defined]
        server.shutdown()
        server.server_close()


def test_status_when_the_daemon_does_not_answer(
    ctl_env: dict[str, str], fake_control: Callable[[type], None]
) -> None:
    fake_control(_Silent)
    result = relayctl({**ctl_env, "AGENT_RELAY_CONTROL_TIMEOUT": "0.5"}, "status")
    assert result.returncode == ExitCode.FAILURE
    assert "did not answer within 0.5s" in one_line(result.stderr)


def test_version_mismatch_warns(
    ctl_env: dict[str, str], fake_control: Callable[[type], None]
) -> None:
    fake_control(_OldVersion)
    result = relayctl(ctl_env, "status")
    assert result.returncode == 0, result.stderr
    assert "warning: relayd is version 0.0.1" in one_line(result.stderr)


# ------------------------------------------------------------------------------ logs


def test_logs_from_the_running_daemon_and_follow(
    ctl_env: dict[str, str], relayd_process: Start
) -> None:
    relayd = relayd_process()
    recent = relayctl(ctl_env, "logs", "-n", "50")
    assert recent.returncode == 0, recent.stderr
    assert "serving on" in recent.stdout
    assert len(relayctl(ctl_env, "logs", "-n", "1").stdout.strip().splitlines()) == 1
    with subprocess.Popen(  # leaving the block closes its pipes
        [RELAYCTL, "logs", "-f", "-n", "0"], env=ctl_env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    ) as follower:
        try:
            assert _wait_until(lambda: "control socket" in relayctl(ctl_env, "logs").stdout)
            threading.Timer(0.5, relayd.signal, args=(signal.SIGHUP,)).start()
            assert follower.stdout is not None
            line = follower.stdout.readline()
            assert "reloaded settings" in line
        finally:
            follower.terminate()
            follower.wait(10)


def _wait_until(check: Callable[[], bool]) -> bool:
    return any(check() for _ in range(20))


def test_logs_when_down_without_a_log_file(ctl_env: dict[str, str]) -> None:
    result = relayctl(ctl_env, "logs")
    assert result.returncode == ExitCode.NOT_RUNNING
    assert "journalctl --user -u agent-relay" in one_line(result.stderr)


def test_logs_when_down_come_from_the_log_file(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    log_file = tmp_path / "logs" / "relayd.log"
    relayd = relayd_process(env={"AGENT_RELAY_LOG_FILE": str(log_file)})
    relayd.stop()
    result = relayctl({**ctl_env, "AGENT_RELAY_LOG_FILE": str(log_file)}, "logs", "-n", "3")
    assert result.returncode == 0, result.stderr
    assert "relayd stopped" in result.stdout.splitlines()[-1]
    assert f"showing {log_file}" in result.stderr


# ------------------------------------------------------------------------------ bad input


def _failed_start(relayd_process: Start, **kwargs: object) -> RelaydProcess:
    relayd = relayd_process(expect_serving=False, **kwargs)
    assert relayd.wait(15) != 0
    assert "Traceback" not in relayd.stderr
    assert len([ln for ln in relayd.stderr.splitlines() if ln.startswith("relayd:")]) == 1
    return relayd


def test_broken_config_file(relayd_process: Start, tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("port = [\n")
    relayd = _failed_start(relayd_process)
    assert relayd.proc is not None and relayd.proc.returncode == 2
    assert "is not valid TOML" in relayd.stderr


def test_unusable_data_directory(relayd_process: Start, tmp_path: Path) -> None:
    (tmp_path / "not-a-dir").write_text("")
    relayd = _failed_start(relayd_process, env={"DB_PATH": str(tmp_path / "not-a-dir" / "r.db")})
    assert "cannot use the data directory" in relayd.stderr


def test_occupied_port(relayd_process: Start) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        relayd = _failed_start(relayd_process, env={"PORT": str(port)})
    assert f"cannot listen on 127.0.0.1:{port}" in relayd.stderr


def test_socket_path_too_long(relayd_process: Start, tmp_path: Path) -> None:
    long_path = tmp_path / ("d" * 60) / ("s" * 60 + ".sock")
    relayd = _failed_start(relayd_process, env={"AGENT_RELAY_SOCKET": str(long_path)})
    assert "control socket path is too long" in relayd.stderr
    assert not long_path.parent.exists()
    assert not (tmp_path / "relay.db").exists()  # refused before touching anything


def test_second_instance_refuses_and_leaves_the_first_alone(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    first = relayd_process()
    pid = first.proc.pid  # type: ignore[union-attr]
    same_socket = _failed_start(relayd_process)
    assert f"relayd is already running (pid {pid}, socket" in same_socket.stderr
    other_socket = str(tmp_path / "run2" / "relayd.sock")
    same_db = _failed_start(relayd_process, env={"AGENT_RELAY_SOCKET": other_socket})
    assert f"relayd is already running (pid {pid}, database" in same_db.stderr
    status = relayctl(ctl_env, "status", "--json")
    assert status.returncode == 0 and f'"pid": {pid}' in status.stdout


# ------------------------------------------------------------------------------ backup


def test_backup_through_the_daemon(
    ctl_env: dict[str, str], relayd_process: Start, tmp_path: Path
) -> None:
    relayd_process()
    backup = relayctl(ctl_env, "backup", str(tmp_path / "copy.db"))
    assert backup.returncode == 0, backup.stderr
    assert f"backup written to {tmp_path / 'copy.db'}" in backup.stdout
    assert (tmp_path / "copy.db").stat().st_size > 0
    refused = relayctl(ctl_env, "backup", str(tmp_path / "missing-dir" / "copy.db"))
    assert refused.returncode == ExitCode.FAILURE
    assert "does not exist" in one_line(refused.stderr)


def test_socket_found_through_listen_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """relayd started elsewhere (another XDG_RUNTIME_DIR) left listen.json where we look."""
    for name in ("AGENT_RELAY_SOCKET", "AGENT_RELAY_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    elsewhere = tmp_path / "elsewhere" / "relayd.sock"
    elsewhere.parent.mkdir()
    live = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    live.bind(str(elsewhere))
    args = argparse.Namespace(socket=None, config=None)
    default = tmp_path / "agent-relay" / "relayd.sock"
    assert resolve_socket(args) == default  # nothing recorded yet
    default.parent.mkdir()
    (default.parent / "listen.json").write_text(json.dumps({"socket": str(elsewhere)}))
    assert resolve_socket(args) == elsewhere
    live.close()


def test_global_flags_work_before_the_command_too(ctl_env: dict[str, str]) -> None:
    for argv in (("--json", "status"), ("status", "--json")):
        result = relayctl(ctl_env, *argv)
        assert result.returncode == ExitCode.NOT_RUNNING, argv
        assert json.loads(result.stdout)["running"] is False, argv
