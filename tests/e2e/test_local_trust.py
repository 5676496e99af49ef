"""relayctl trusts only what the user owns, and prints no raw control characters (contract
§10). Real relayctl and relayd subprocesses; the "attacker" listens on loopback sockets."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_local_files import call
from tests.helpers import RelaydProcess, cli_env, relayctl

Start = Callable[..., RelaydProcess]
TOKEN = "admin-token-" + "s3cr3t" * 6
ANSWER = b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n' \
         b'Connection: close\r\n\r\n{"agents": []}'


class Listener:
    """A loopback (TCP or Unix) server that records every byte it is sent."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.received = b""
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @classmethod
    def tcp(cls) -> Listener:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        return cls(sock)

    @classmethod
    def unix(cls, path: Path) -> Listener:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(str(path))
        return cls(sock)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            with conn:
                conn.settimeout(1)
                with contextlib.suppress(OSError):
                    self.received += conn.recv(65536)
                    conn.sendall(ANSWER)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener.tcp()
    yield listener
    listener.close()


@pytest.fixture
def other_user() -> Iterator[int]:
    """A throwaway local user (root only), removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create another local user with useradd (not running as root)")
    if shutil.which("useradd") is None:
        pytest.skip("useradd is not installed (apt-get install passwd)")
    name = f"relaytest{secrets.token_hex(4)}"
    created = _retry(["useradd", "--system", "--no-create-home", "--shell",
                      "/usr/sbin/nologin", name])
    if created.returncode != 0:
        pytest.skip(f"useradd could not create a test user: {created.stderr.strip()}")
    import pwd

    try:
        yield pwd.getpwnam(name).pw_uid
    finally:
        _retry(["userdel", name])


def _retry(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """useradd/userdel fail while another process holds /etc/passwd's lock: try again."""
    for _ in range(20):
        result = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        if result.returncode == 0 or "lock" not in result.stderr.lower():
            return result
        time.sleep(0.25)
    return result


def _config(tmp_path: Path) -> int:
    """A config with the admin token, pointing at a loopback port where nothing listens."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        idle_port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(f'token = "{TOKEN}"\nhost = "127.0.0.1"\nport = {idle_port}\n')
    os.chmod(config, 0o600)
    return int(idle_port)


def _plant(directory: Path, port: int, host: str = "127.0.0.1") -> Path:
    directory.mkdir(exist_ok=True)
    listen = directory / "listen.json"
    listen.write_text(json.dumps({
        "pid": os.getpid(), "version": "0", "socket": None, "host": host, "port": port,
        "url": f"http://{host}:{port}",
        "control": {"transport": "tcp", "host": "127.0.0.1", "port": port, "token": "x"},
    }))
    return listen


def _assert_no_token_sent(tmp_path: Path, attacker: Listener, listen: Path) -> None:
    env = cli_env(tmp_path)
    agents = relayctl(env, "agents")
    status = relayctl(env, "status")
    for result in (agents, status):
        assert result.returncode == 3, result.stdout + result.stderr
        warnings = [line for line in result.stderr.splitlines() if "warning: ignoring" in line]
        assert len(warnings) <= 1, result.stderr
        if result is agents:  # agents searches every candidate; status only the socket's own
            assert len(warnings) == 1 and str(listen) in warnings[0], result.stderr
    assert TOKEN.encode() not in attacker.received
    assert attacker.connections == 0


def test_a_listen_json_planted_by_another_user_gets_no_token(
    tmp_path: Path, attacker: Listener, other_user: int
) -> None:
    _config(tmp_path)
    listen = _plant(tmp_path / "run", attacker.port)
    os.chown(tmp_path / "run", other_user, other_user)
    os.chown(listen, other_user, other_user)
    _assert_no_token_sent(tmp_path, attacker, listen)
    # the same in the per-user runtime dir relayctl also searches (the /tmp fallback's role)
    listen.unlink()
    runtime = tmp_path / "agent-relay"
    planted = _plant(runtime, attacker.port)
    os.chown(runtime, other_user, other_user)
    os.chown(planted, other_user, other_user)
    _assert_no_token_sent(tmp_path, attacker, planted)


def test_a_control_socket_of_another_user_is_never_used(
    tmp_path: Path, other_user: int
) -> None:
    _config(tmp_path)
    run = tmp_path / "run"
    run.mkdir(mode=0o755)
    planted = Listener.unix(run / "relayd.sock")
    try:
        os.chown(run / "relayd.sock", other_user, other_user)
        os.chown(run, other_user, other_user)
        result = relayctl(cli_env(tmp_path), "status")
        assert result.returncode == 3, result.stderr
        assert "warning: ignoring" in result.stderr and "belongs to uid" in result.stderr
        assert planted.connections == 0
    finally:
        planted.close()


def test_group_writable_listen_json_or_directory_is_ignored(
    tmp_path: Path, attacker: Listener
) -> None:
    _config(tmp_path)
    listen = _plant(tmp_path / "run", attacker.port)
    os.chmod(tmp_path / "run", 0o770)  # group-writable directory: anyone in it could plant
    _assert_no_token_sent(tmp_path, attacker, listen)
    os.chmod(tmp_path / "run", 0o700)
    os.chmod(listen, 0o666)  # world-writable file
    _assert_no_token_sent(tmp_path, attacker, listen)


def test_the_token_never_goes_to_a_non_loopback_address_from_listen_json(
    tmp_path: Path,
) -> None:
    _config(tmp_path)
    listen = _plant(tmp_path / "run", 9, host="192.0.2.1")  # TEST-NET-1: never reachable
    os.chmod(tmp_path / "run", 0o700)
    os.chmod(listen, 0o600)
    result = relayctl(cli_env(tmp_path), "agents", timeout=15)
    assert result.returncode == 3, result.stderr  # fell back to the config's loopback port
    assert "non-loopback address 192.0.2.1" in result.stderr


def test_relayd_and_relayctl_warn_about_a_readable_token_file(
    relayd_process: Start, tmp_path: Path
) -> None:
    _config(tmp_path)
    config = tmp_path / "config.toml"
    os.chmod(config, 0o644)
    proc = relayd_process(env={"AGENT_RELAY_TOKEN": TOKEN})
    warned = [line for line in proc.stderr.splitlines() if "readable by group or others" in line]
    assert len(warned) == 1 and "chmod 600" in warned[0]
    shown = relayctl(cli_env(tmp_path), "token", "show")
    assert shown.returncode == 0 and shown.stdout.strip() == TOKEN
    assert [line for line in shown.stderr.splitlines() if "readable by group" in line]
    os.chmod(config, 0o600)
    assert "readable" not in relayctl(cli_env(tmp_path), "token", "show").stderr
    proc.stop()


def test_runtime_dir_is_made_private(relayd_process: Start, tmp_path: Path) -> None:
    run = tmp_path / "agent-relay"  # the per-user runtime dir ($XDG_RUNTIME_DIR is tmp_path)
    run.mkdir(mode=0o755)
    os.chmod(run, 0o755)  # ours, but open to others: relayd makes it 0700
    proc = relayd_process(env={"AGENT_RELAY_SOCKET": str(run / "relayd.sock")})
    assert stat.S_IMODE(os.stat(run).st_mode) == 0o700
    assert stat.S_IMODE(os.lstat(run / "relayd.sock").st_mode) == 0o600
    assert stat.S_IMODE(os.lstat(run / "listen.json").st_mode) == 0o600
    proc.stop()


# ----------------------------------------------------------------------------- terminal escapes

HOSTILE = "evil\x1b]0;pwned\x07\x1b[2J\u202eexe.txt\u2066x\u2069\r\x9bend"
RAW = ["\x1b", "\x07", "\r", "\x9b", "\u202e", "\u2066", "\u2069"]


def test_human_output_escapes_control_and_bidi_characters(
    relayd_process: Start, tmp_path: Path
) -> None:
    proc = relayd_process(env={"STALE_TTL_MS": "600000"})
    assert call(f"{proc.api}/agents", "POST", {"id": "bob", "label": HOSTILE})[0] == 201
    status, _ = call(f"{proc.api}/messages", "POST",
                     {"from": "mallory", "to": "bob", "subject": HOSTILE, "body": HOSTILE})
    assert status == 201 and proc.url is not None
    env = cli_env(tmp_path, AGENT_RELAY_URL=proc.url)
    outputs = {
        "agents": relayctl(env, "agents"),
        "inbox": relayctl(env, "inbox", "--for", "bob"),
        "watch": relayctl(env, "watch", "--for", "bob", "--since-id", "0", "--count", "2",
                          "--timeout", "10"),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr)
        for char in RAW:
            assert char not in result.stdout, (name, repr(char), result.stdout)
            assert char not in result.stderr, (name, repr(char))
        assert "\\x1b" in result.stdout and "\\u202e" in result.stdout, (name, result.stdout)
    # JSON output stays JSON, carrying the text exactly as stored
    as_json = relayctl(env, "agents", "--json")
    assert json.loads(as_json.stdout)["agents"][0]["label"] == HOSTILE
    proc.stop()
