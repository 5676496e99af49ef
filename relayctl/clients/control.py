"""Talking to relayd's control plane: HTTP+JSON over a Unix socket, with short timeouts, or
over loopback TCP with the token relayd wrote into its private listen.json.

Finding the socket: --socket, AGENT_RELAY_SOCKET, the config file, then the default path; when
nothing was configured and the default is absent, the listen.json a running relayd left in a
per-user runtime dir (it may have had another XDG_RUNTIME_DIR than we do). The TCP transport
(control_transport = "tcp", the default on Windows) reads port and token from listen.json next
to that socket path; so does a relayctl set to "unix" that finds no socket but a TCP record.
"""

from __future__ import annotations

import argparse
import errno
import http.client
import json
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayctl import trust
from relayctl.cli import CliError, ExitCode
from relayctl.terminal import escape
from relayd import __version__
from relayd.config import paths
from relayd.config import settings as settings_mod
from relayd.config.settings import Settings, SettingsError

API_HEADER = "X-Agent-Relay-Control-Api"
VERSION_HEADER = "X-Agent-Relay-Version"
CONTROL_API_VERSION = "1"
DEFAULT_TIMEOUT = 5.0
TIMEOUT_ENV = "AGENT_RELAY_CONTROL_TIMEOUT"
START_HINT = "start it with `relayctl daemon start` or `relayd`"


@dataclass(frozen=True)
class TcpControl:
    """A relayd control port on loopback and the token it wants, as listen.json records them."""

    port: int
    token: str
    listen_file: Path
    host: str = paths.CONTROL_HOST

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except BaseException:
            sock.close()
            raise
        self.sock = sock


def load_settings(args: argparse.Namespace) -> Settings:
    """The local settings (config file + environment), or one clear line when they are broken."""
    explicit = settings_mod.config_file_from(getattr(args, "config", None), os.environ)
    env = dict(os.environ)
    if not explicit.exists():  # no config yet is fine here: defaults and environment
        env.pop("AGENT_RELAY_CONFIG", None)
    try:
        settings = settings_mod.load(config=explicit if explicit.exists() else None, env=env)
    except SettingsError as exc:
        raise CliError(f"{exc}; fix the file or rerun `relayctl setup`") from None
    trust.warn_if_token_exposed(settings.config_path)
    return settings


def resolve_socket(args: argparse.Namespace, settings: Settings | None = None) -> Path:
    explicit = _explicit_socket(args)
    if explicit:
        return Path(explicit).expanduser()
    settings = settings or load_settings(args)
    configured = settings.socket_path
    if configured != paths.default_socket_path():
        return configured
    moved = paths.instance_socket_path(settings.db_path)  # see relayd.daemon.instance.InstanceGuard
    if moved.exists() and trust.trusted(moved):
        return moved
    if configured.exists():
        return configured
    for listen_file in paths.listen_file_candidates():
        recorded = _socket_from_listen_file(listen_file)
        if recorded is not None:
            return recorded
    return configured


def _settings_for_control(args: argparse.Namespace) -> Settings | None:
    """The local settings; None when they are broken but the socket was named explicitly
    (a broken config need not stop an explicit --socket)."""
    try:
        return load_settings(args)
    except CliError:
        if _explicit_socket(args):
            return None
        raise


def _explicit_socket(args: argparse.Namespace) -> str | None:
    return getattr(args, "socket", None) or os.environ.get("AGENT_RELAY_SOCKET")


def find_tcp_control(
    args: argparse.Namespace, socket_path: Path, transport: str
) -> TcpControl | None:
    """The TCP control port to use, or None for the Unix socket."""
    if transport == "unix" and socket_path.exists():
        return None
    own = paths.listen_file_for(socket_path)
    candidates = [own] if _explicit_socket(args) else [own, *paths.listen_file_candidates()]
    for listen_file in dict.fromkeys(candidates):
        found = _tcp_from_listen_file(listen_file)
        if found is not None:
            return found
    if transport == "unix":
        return None
    raise CliError(
        f"relayd is not running (no control port recorded in {own}); {START_HINT}",
        ExitCode.NOT_RUNNING,
    )


def _tcp_from_listen_file(path: Path) -> TcpControl | None:
    try:
        control = (trust.read_json(path) or {})["control"]  # only a file the user owns
        if control["transport"] != "tcp":
            return None
        port, token = control["port"], control["token"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(port, int) or not isinstance(token, str):
        return None
    return TcpControl(port, token, path)


def _socket_from_listen_file(path: Path) -> Path | None:
    try:
        candidate = Path((trust.read_json(path) or {})["socket"])
    except (ValueError, KeyError, TypeError):
        return None
    return candidate if candidate.exists() and trust.trusted(candidate) else None


def timeout_from_env(default: float = DEFAULT_TIMEOUT) -> float:
    raw = os.environ.get(TIMEOUT_ENV)
    try:
        return float(raw) if raw else default
    except ValueError:
        raise CliError(f"{TIMEOUT_ENV} must be a number of seconds, not {raw!r}") from None


@dataclass
class ControlClient:
    socket_path: Path
    timeout: float = DEFAULT_TIMEOUT
    tcp: TcpControl | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ControlClient:
        settings = _settings_for_control(args)
        transport = (settings_mod.default_control_transport() if settings is None
                     else settings.control_transport)
        socket_path = resolve_socket(args, settings)
        tcp = find_tcp_control(args, socket_path, transport)
        return cls(socket_path, timeout_from_env(), tcp)

    @property
    def where(self) -> str:
        return str(self.socket_path) if self.tcp is None else self.tcp.address

    def _connection(self) -> http.client.HTTPConnection:
        if self.tcp is None:
            problem = trust.path_problem(self.socket_path)
            if problem is not None:  # someone else's socket: never talk to it
                trust.warn_ignored(self.socket_path, problem)
                raise CliError(
                    f"relayd is not running (no trusted control socket at {self.socket_path});"
                    f" {START_HINT}",
                    ExitCode.NOT_RUNNING,
                )
            return UnixHTTPConnection(self.socket_path, self.timeout)
        return http.client.HTTPConnection(self.tcp.host, self.tcp.port, timeout=self.timeout)

    def get(self, path: str) -> dict[str, Any]:
        return self.request("GET", path)

    def post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.request("POST", path, body or {})

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        conn = self._connection()
        try:
            response = self._send(conn, method, path, body)
            payload = response.read()
        except TimeoutError:
            raise self._timeout() from None
        finally:
            conn.close()
        data = _decode(payload)
        if response.status >= 400:
            raise self._refusal(method, path, response, data)
        return data

    def _refusal(
        self, method: str, path: str, response: http.client.HTTPResponse, data: dict[str, Any]
    ) -> CliError:
        if response.status == 401 and self.tcp is not None:
            return CliError(
                f"relayd on {self.tcp.address} refused the control token from "
                f"{self.tcp.listen_file} (that file may be left over from another relayd run);"
                " restart relayd to write a fresh one",
                ExitCode.FAILURE,
            )
        return CliError(f"relayd refused {method} {path}: {data.get('error', response.reason)}")

    def stream_lines(self, path: str) -> Iterator[str]:
        """The body of a streaming answer, line by line, until relayd ends it."""
        conn = self._connection()
        try:
            response = self._send(conn, "GET", path, None)
            if response.status >= 400:
                raise self._refusal("GET", path, response, _decode(response.read()))
            assert conn.sock is not None
            conn.sock.settimeout(None)  # following waits as long as the reader wants
            for raw in response:
                yield raw.decode("utf-8", "replace").rstrip("\n")
        except TimeoutError:
            raise self._timeout() from None
        finally:
            conn.close()

    def _send(
        self, conn: http.client.HTTPConnection, method: str, path: str, body: dict[str, Any] | None
    ) -> http.client.HTTPResponse:
        headers = {API_HEADER: CONTROL_API_VERSION, "Accept": "application/json"}
        if self.tcp is not None:
            headers["Authorization"] = f"Bearer {self.tcp.token}"
        encoded = None
        if body is not None:
            encoded = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=encoded, headers=headers)
            response = conn.getresponse()
        except OSError as exc:
            if isinstance(exc, TimeoutError):
                raise
            raise self._connection_error(exc) from None
        _warn_on_version_mismatch(response.getheader(VERSION_HEADER))
        return response

    def _timeout(self) -> CliError:
        return CliError(
            f"relayd did not answer within {self.timeout:g}s on {self.where}"
            f" (it may be stuck; check `relayctl logs` or raise {TIMEOUT_ENV})",
            ExitCode.FAILURE,
        )

    def _connection_error(self, exc: OSError) -> CliError:
        if self.tcp is not None:
            return tcp_connection_error(self.tcp, exc)
        return connection_error(self.socket_path, exc)


def tcp_connection_error(tcp: TcpControl, exc: OSError) -> CliError:
    if isinstance(exc, ConnectionRefusedError) or exc.errno in (
        errno.ECONNREFUSED, 10061  # WSAECONNREFUSED
    ):
        return CliError(
            f"relayd is not running (nothing listens on control port {tcp.address} recorded in "
            f"{tcp.listen_file}; it probably crashed); {START_HINT}",
            ExitCode.NOT_RUNNING,
        )
    return CliError(f"cannot reach relayd at {tcp.address}: {exc.strerror or exc}",
                    ExitCode.FAILURE)


def connection_error(path: Path, exc: OSError) -> CliError:
    """Tell apart: no socket, a stale socket, someone else's socket, anything else."""
    if isinstance(exc, FileNotFoundError) or exc.errno == errno.ENOENT:
        return CliError(
            f"relayd is not running (no socket at {path}); {START_HINT}",
            ExitCode.NOT_RUNNING,
        )
    if isinstance(exc, ConnectionRefusedError) or exc.errno == errno.ECONNREFUSED:
        return CliError(
            f"relayd is not running (stale socket at {path}: connection refused; it probably "
            f"crashed); {START_HINT}",
            ExitCode.NOT_RUNNING,
        )
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return CliError(
            f"permission denied on the control socket {path} ({_owner(path)}); run relayctl "
            "as that user",
            ExitCode.FAILURE,
        )
    return CliError(f"cannot reach relayd at {path}: {exc.strerror or exc}", ExitCode.FAILURE)


def _owner(path: Path) -> str:
    for candidate in (path, path.parent):
        try:
            uid = candidate.stat().st_uid
        except OSError:
            continue
        return f"it belongs to {_user_name(uid)}"
    return "its owner is unknown"


def _user_name(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _decode(payload: bytes) -> dict[str, Any]:
    try:
        data = json.loads(payload or b"{}")
    except ValueError:
        return {"error": payload.decode("utf-8", "replace")[:200]}
    return data if isinstance(data, dict) else {"value": data}


_warned = False


def _warn_on_version_mismatch(daemon_version: str | None) -> None:
    global _warned
    if daemon_version and daemon_version != __version__ and not _warned:
        _warned = True
        print(
            f"relayctl: warning: relayd is version {escape(daemon_version)}, relayctl is "
            f"{__version__};"
            " restart relayd after upgrading (relayctl daemon restart)",
            file=sys.stderr,
        )
