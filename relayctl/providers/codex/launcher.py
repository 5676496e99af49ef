"""`relayctl codex`: Codex on its app-server, the sidecar, and (unless headless) the Codex UI.

Three processes: ``codex app-server --listen ws://127.0.0.1:<free port>`` and the sidecar, each
in its own process group so a terminal's Ctrl-C reaches only the launcher and the UI, and
``codex --remote ws://…`` with the user's arguments in the foreground. When any of them ends
(exit, crash, Ctrl-C, SIGTERM), the launcher stops the others (SIGTERM, then SIGKILL of the
whole group), marks the agent offline, and returns; nothing it started is left running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

from relayctl.cli import CliError, ExitCode
from relayctl.clients.api import ApiClient, find_relay
from relayctl.providers.codex.sidecar import WS_TOKEN_ENV
from relayd.config import paths

READY_TIMEOUT = 30.0
STOP_GRACE = 4.0
PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Linux: adopt our orphaned descendants. Codex runs its shells in sessions of their own,
    out of reach of a process-group kill; as their subreaper the launcher still finds them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def end_all(processes: list[psutil.Process], grace: float = 2.0) -> None:
    """SIGTERM these (those still running), then SIGKILL whatever outlives the grace."""
    running = []
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if process.is_running():
                process.terminate()
                running.append(process)
    _, left = psutil.wait_procs(running, timeout=grace)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(left, timeout=2)


def codex_binary(env: Mapping[str, str]) -> str:
    """$AGENT_RELAY_CODEX_BIN, else `codex` on PATH."""
    explicit = env.get("AGENT_RELAY_CODEX_BIN", "").strip()
    if explicit:
        if shutil.which(explicit) is None and not os.access(explicit, os.X_OK):
            raise CliError(f"AGENT_RELAY_CODEX_BIN={explicit} is not an executable program")
        return explicit
    found = shutil.which("codex", path=env.get("PATH"))
    if found is None:
        raise CliError("`codex` is not on PATH: install it (npm install -g @openai/codex) "
                       "or set AGENT_RELAY_CODEX_BIN")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, process: subprocess.Popen[Any], timeout: float) -> None:
    """Until the app-server answers /readyz; CliError if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CliError(f"codex app-server exited with status {process.returncode} "
                           "before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise CliError(f"codex app-server did not become ready within {timeout:.0f} s")


def _signal(process: subprocess.Popen[Any], sig: int, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(process.pid, sig)  # the group's stragglers, even after its leader
        elif process.poll() is None:
            process.send_signal(sig)


def stop_processes(processes: Sequence[tuple[subprocess.Popen[Any] | None, bool]],
                   grace: float = STOP_GRACE) -> None:
    """SIGTERM each (its whole process group when the flag says it leads one) at once, wait
    for all within one grace period, then SIGKILL what is left."""
    present = [(p, group) for p, group in processes if p is not None]
    for process, group in present:
        if process.poll() is None:
            _signal(process, signal.SIGTERM, group)
    deadline = time.monotonic() + grace
    for process, _ in present:
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(max(0.0, deadline - time.monotonic()))
    for process, group in present:
        _signal(process, signal.SIGKILL, group)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(2)


class Launcher:
    def __init__(self, codex_args: Sequence[str], headless: bool, thread: str | None = None,
                 env: Mapping[str, str] | None = None, out: IO[str] | None = None) -> None:
        self.codex_args = list(codex_args)
        self.headless = headless
        self.thread = thread
        self.env = dict(os.environ if env is None else env)
        self.out = out or sys.stdout
        self.app_server: subprocess.Popen[bytes] | None = None
        self.sidecar: subprocess.Popen[str] | None = None
        self.ui: subprocess.Popen[bytes] | None = None
        self.info: dict[str, str] = {}
        self._stop = threading.Event()
        self._log: IO[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}  # descendants met while supervising
        self._token_dir: Path | None = None

    def say(self, key: str, value: str) -> None:
        if self.headless:
            print(f"{key}: {value}", file=self.out, flush=True)

    def run(self) -> int:
        binary = codex_binary(self.env)
        become_subreaper()
        relay = find_relay(env=self.env)  # fail now, in one line, when no relay is configured
        self.env.setdefault("AGENT_RELAY_URL", relay.url)
        if relay.token:
            self.env.setdefault("AGENT_RELAY_TOKEN", relay.token)
        old = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT,
                                                                   signal.SIGHUP)}
        try:
            return self._run(binary)
        finally:
            self._teardown()
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _token_file(self) -> Path:
        """A fresh capability token in a private file (removed at teardown)."""
        directory = Path(tempfile.mkdtemp(prefix="relay-codex-"))  # mode 0700
        self._token_dir = directory
        path = directory / "ws-token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secrets.token_urlsafe(32))
        return path.absolute()

    def _log_file(self) -> IO[bytes]:
        directory = paths.log_dir()
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = directory / f"codex-{os.getpid()}.log"
        self.info["log"] = str(path)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "ab")

    def _run(self, binary: str) -> int:
        port = free_port()
        url = f"ws://127.0.0.1:{port}"
        self.info["appServer"] = url
        self._log = self._log_file()
        server = [binary, "app-server", "--listen", url]
        client_env = dict(self.env)
        attach_auth = ""
        if self.env.get("AGENT_RELAY_CODEX_WS_AUTH", "").strip() in ("1", "true", "yes"):
            token_file = self._token_file()
            server += ["--ws-auth", "capability-token", "--ws-token-file", str(token_file)]
            client_env[WS_TOKEN_ENV] = token_file.read_text(encoding="utf-8")
            attach_auth = f" --remote-auth-token-env {WS_TOKEN_ENV}"
            self.info["tokenFile"] = str(token_file)
        self.app_server = subprocess.Popen(
            server, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=self._log, start_new_session=True)
        wait_ready(port, self.app_server, READY_TIMEOUT)
        self.say("app-server", url)
        self.info["attachAuth"] = attach_auth
        if attach_auth:
            self.say("token-file", f"{self.info['tokenFile']} (attach with "
                                   f"{WS_TOKEN_ENV}=$(cat {self.info['tokenFile']}) set)")
        command = [sys.executable, "-m", "relayctl.providers.codex.sidecar", "--app-server", url]
        if self.thread:
            command += ["--thread", self.thread]
        elif not self.headless:
            command.append("--attach")
        self.sidecar = subprocess.Popen(
            command, env=client_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=None if self.headless else self._log, text=True, start_new_session=True)
        reader = threading.Thread(target=self._read_sidecar, args=(self.sidecar.stdout,),
                                  daemon=True)
        reader.start()
        if not self.headless:
            self.ui = subprocess.Popen(
                [binary, "--remote", url, *attach_auth.split(), *self.codex_args],
                env=client_env)
        return self._supervise()

    def _read_sidecar(self, stream: IO[str] | None) -> None:
        if stream is None:
            return
        for line in stream:
            key, _, value = line.strip().partition(": ")
            if key == "session" and value:
                self.info[key] = value
            if key in ("thread", "agent") and value:
                self.info[key] = value
                self.say(key, value)
                if key == "agent":
                    self.say("attach", f"codex resume --remote {self.info['appServer']}"
                                       f"{self.info.get('attachAuth', '')} "
                                       f"{self.info.get('thread', '')}".rstrip())

    def _supervise(self) -> int:
        parts = {"codex app-server": self.app_server, "sidecar": self.sidecar, "codex": self.ui}
        ticks = 0
        while not self._stop.wait(0.1):
            ticks += 1
            if ticks % 5 == 1:
                self._note_descendants()
            for name, process in parts.items():
                if process is not None and process.poll() is not None:
                    if name == "codex":
                        return process.returncode
                    print(f"relayctl codex: {name} exited with status {process.returncode}; "
                          "stopping", file=sys.stderr)
                    return ExitCode.FAILURE
        return ExitCode.OK

    def _note_descendants(self) -> None:
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process().children(recursive=True):
                self._seen.setdefault(child.pid, child)

    def _teardown(self) -> None:
        # The UI first (it is the user's terminal), then together the sidecar (it marks the
        # agent offline) and the app-server, then everything they spawned, wherever it went.
        self._note_descendants()
        stop_processes([(self.ui, False)])
        stop_processes([(self.sidecar, True), (self.app_server, True)])
        leftovers: dict[int, psutil.Process] = {}
        with contextlib.suppress(psutil.Error):
            leftovers = {p.pid: p for p in psutil.Process().children(recursive=True)}
        leftovers.update({pid: p for pid, p in self._seen.items() if pid not in leftovers})
        end_all(list(leftovers.values()))
        agent = self.info.get("agent")
        if agent and (self.sidecar is None or self.sidecar.returncode != 0):
            # The sidecar did not get to say goodbye itself (it crashed or was killed).
            body: dict[str, Any] = {"status": "offline"}
            instance, _, epoch = self.info.get("session", "").partition(" ")
            if instance and epoch.isdigit():
                body.update(instanceId=instance, epoch=int(epoch))
            with contextlib.suppress(CliError, OSError):
                ApiClient(find_relay(env=self.env), timeout=3).patch(f"/agents/{agent}", body)
        if self._log is not None:
            self._log.close()
        if self._token_dir is not None:
            shutil.rmtree(self._token_dir, ignore_errors=True)

