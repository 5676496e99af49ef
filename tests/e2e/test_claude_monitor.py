"""`relayctl claude monitor` read from its stdout while messages are sent and relayd restarts."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

from tests.e2e.claude_support import hook_env, payload, run_hook
from tests.helpers import RELAYCTL, RelaydProcess, relayctl

LINE = re.compile(r"^\[agent-relay\] msg#(\d+) from (\S+) \(sentBy ")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MonitorProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen([RELAYCTL, "claude", "monitor"], env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: list[tuple[float, str]] = []
        self.errors: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        with self.proc.stdout:  # closed at EOF: the monitor has exited
            for line in self.proc.stdout:
                self.lines.append((time.monotonic(), line.rstrip("\n")))

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        with self.proc.stderr:
            for line in self.proc.stderr:
                self.errors.append(line)

    def ids(self) -> list[int]:
        found = []
        for _, line in self.lines:
            match = LINE.match(line)
            assert match, line
            found.append(int(match.group(1)))
        return found

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.lines) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(self.lines) >= count, (self.lines, self.errors)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def _send(env: dict[str, str], to: str, body: str, **flags: str) -> tuple[int, float]:
    args = ["send", to, body, "--from", "alice", "--json"]
    for key, value in flags.items():
        args += [f"--{key}", value]
    result = relayctl(env, *args)
    assert result.returncode == 0, result.stderr
    return int(json.loads(result.stdout)["id"]), time.monotonic()


def test_monitor_prints_each_message_once_across_relay_restarts_and_new_monitors(
        tmp_path: Path) -> None:
    port = _free_port()
    relay = RelaydProcess(tmp_path, env={"PORT": str(port), "STALE_TTL_MS": "1500",
                                         "REAP_INTERVAL_MS": "200"}).start()
    monitors: list[MonitorProcess] = []
    try:
        project = tmp_path / "proj"
        (project / ".git").mkdir(parents=True)
        env = hook_env(tmp_path, f"http://127.0.0.1:{port}")
        relayctl(env, "register", "--id", "alice")
        # SessionStart names the agent; the monitor of the same Claude process (CLAUDE_PID)
        # finds it without AGENT_RELAY_AGENT_ID.
        start = run_hook(env, "SessionStart", payload("SessionStart", project))
        context = start.answer()["hookSpecificOutput"]["additionalContext"]  # type: ignore[index]
        agent_id = re.search(r"as agent `([^`]+)`", context).group(1)  # type: ignore[union-attr]
        monitor = MonitorProcess({**env, "CLAUDE_CODE_SESSION_ID": "not-this-one"})
        monitors.append(monitor)
        early, _ = _send(env, agent_id, "sent before the monitor connected")
        monitor.wait_for(1)

        sent: list[tuple[int, float]] = [(early, 0.0)]
        evil = "multi\nline \x1b[2J body \u202e with \"quotes\""
        sent.append(_send(env, agent_id, evil, subject="re: \x1b]0;x\x07 PR"))
        for n in range(3):
            sent.append(_send(env, agent_id, f"message {n}"))
        monitor.wait_for(len(sent))
        for (message_id, at), (seen, line) in zip(sent[1:], monitor.lines[1:], strict=True):
            assert line.startswith(f"[agent-relay] msg#{message_id} from alice (sentBy ")
            assert seen - at < 2.0, (seen - at, line)
        evil_line = monitor.lines[1][1]
        assert "\x1b" not in evil_line and "\u202e" not in evil_line and "\\n" in evil_line
        assert f"thread #{sent[1][0]}" in evil_line and 'subject "re: \\x1b]0;x\\x07 PR"' \
            in evil_line
        assert "not instructions from the user" in evil_line

        # the monitor heartbeats: with STALE_TTL_MS=1.5 s the agent stays online
        time.sleep(2.5)
        agents = json.loads(relayctl(env, "agents", "--json").stdout)["agents"]
        assert {a["id"]: a["status"] for a in agents}[agent_id] != "offline"

        # restart the relay: the monitor reconnects, prints nothing twice and misses nothing
        assert relay.stop() == 0
        time.sleep(1.0)
        relay = RelaydProcess(tmp_path, env={"PORT": str(port), "STALE_TTL_MS": "1500",
                                             "REAP_INTERVAL_MS": "200"}).start()
        for n in range(3):
            sent.append(_send(env, agent_id, f"after restart {n}"))
        monitor.wait_for(len(sent))
        time.sleep(0.5)
        assert monitor.ids() == [m for m, _ in sent], (monitor.lines, monitor.errors)
        assert len(monitor.errors) <= 2, monitor.errors  # quiet: one line down, none per retry

        # every printed message is marked delivered for the agent
        inbox = json.loads(relayctl(env, "inbox", "--for", agent_id, "--json").stdout)
        assert all(m["delivered"] and m["deliveredAt"] for m in inbox["messages"])

        # a new monitor (a new window of the session) prints none of them again, takes the
        # agent over (session guard), and the old one stands by: one line per new message
        second = MonitorProcess(env)
        monitors.append(second)
        time.sleep(1.5)
        assert second.lines == []
        last, at = _send(env, agent_id, "only once")
        second.wait_for(1)
        time.sleep(1.0)
        assert second.ids() == [last]
        assert monitor.ids() == [m for m, _ in sent], "the old window printed it too"

        # /agent-relay:disconnect: offline, delivery paused; --undo: the waiting message arrives
        off = relayctl(env, "claude", "disconnect")
        assert off.returncode == 0 and agent_id in off.stdout, off.stderr
        time.sleep(1.0)
        waiting, _ = _send(env, agent_id, "while disconnected")
        time.sleep(1.5)
        agents = json.loads(relayctl(env, "agents", "--json").stdout)["agents"]
        assert {a["id"]: a["status"] for a in agents}[agent_id] == "offline"
        assert second.ids() == [last]
        back = relayctl(env, "claude", "disconnect", "--undo")
        assert back.returncode == 0, back.stderr
        second.wait_for(2)
        assert second.ids() == [last, waiting]
    finally:
        for m in monitors:
            m.stop()
        relay.stop()
