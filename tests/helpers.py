"""Test helpers: a real relayd subprocess, and small HTTP helpers for a running relay."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp

SERVING_RE = re.compile(r"serving on (http://\S+)")


class RelaydProcess:
    """`relayd` as users run it: a child process on a free loopback port, logs on stderr."""

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None,
                 args: list[str] | None = None) -> None:
        self.tmp = tmp
        self.db_path = tmp / "relay.db"
        self.env = {
            **os.environ,
            "PORT": "0",
            "DB_PATH": str(self.db_path),
            "AGENT_RELAY_SOCKET": str(tmp / "run" / "relayd.sock"),
            "AGENT_RELAY_CONFIG": str(tmp / "config.toml"),
            "XDG_RUNTIME_DIR": str(tmp),
            **(env or {}),
        }
        if not Path(self.env["AGENT_RELAY_CONFIG"]).exists():
            Path(self.env["AGENT_RELAY_CONFIG"]).write_text("")
        self.args = args or []
        self.proc: subprocess.Popen[str] | None = None
        self.url: str | None = None
        self.stderr_lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 15.0, expect_serving: bool = True) -> RelaydProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relayd.main", *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        if expect_serving:
            self.wait_serving(timeout)
        return self

    def _read_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with self.proc.stderr:  # closed at EOF: the child has exited
            for line in self.proc.stderr:
                self.stderr_lines.append(line)
                match = SERVING_RE.search(line)
                if match and self.url is None:
                    self.url = match.group(1)

    def wait_serving(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.url is None:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError("relayd exited early:\n" + self.stderr)
            if time.monotonic() > deadline:
                raise TimeoutError("relayd did not start:\n" + self.stderr)
            time.sleep(0.02)

    @property
    def stderr(self) -> str:
        return "".join(self.stderr_lines)

    def logged(self, fragment: str, timeout: float = 5.0) -> bool:
        """Whether relayd's stderr shows `fragment` within `timeout`: the line may still be in
        the pipe when the HTTP answer it goes with has arrived."""
        deadline = time.monotonic() + timeout
        while fragment not in self.stderr:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    @property
    def api(self) -> str:
        assert self.url is not None
        return self.url + "/api"

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        code = self.proc.wait(timeout)
        if self._reader is not None:
            self._reader.join(timeout=2)
        return code

    def stop(self) -> int | None:
        """SIGTERM then wait; SIGKILL only if it hangs. Only ever our own child."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.wait(5)


RELAYCTL = str(Path(sys.executable).parent / "relayctl")


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for relayctl that matches RelaydProcess(tmp): same config and socket,
    private XDG dirs, nothing inherited from the caller's AGENT_RELAY_* or systemd."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AGENT_RELAY_", "XDG_"))}
    env.update(
        {
            "AGENT_RELAY_CONFIG": str(tmp / "config.toml"),
            "AGENT_RELAY_SOCKET": str(tmp / "run" / "relayd.sock"),
            "XDG_CONFIG_HOME": str(tmp / "xdg-config"),
            "XDG_DATA_HOME": str(tmp / "xdg-data"),
            "XDG_STATE_HOME": str(tmp / "xdg-state"),
            "XDG_RUNTIME_DIR": str(tmp),
            **extra,
        }
    )
    env.pop("NOTIFY_SOCKET", None)
    return env


def relayctl(env: Mapping[str, str], *args: str, timeout: float = 20
             ) -> subprocess.CompletedProcess[str]:
    """Run the installed relayctl as a user would, without a terminal."""
    return subprocess.run(
        [RELAYCTL, *args], env=dict(env), capture_output=True, text=True, timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


async def register(http: aiohttp.ClientSession, agent_id: str, **fields: Any) -> dict[str, Any]:
    """POST /api/agents (new or existing) and the agent as the relay answered it."""
    resp = await http.post("/api/agents", json={"id": agent_id, **fields})
    assert resp.status in (200, 201), await resp.text()
    agent: dict[str, Any] = await resp.json()
    return agent
