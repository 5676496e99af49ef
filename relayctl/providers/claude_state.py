"""Where the hooks and the monitor of one Claude Code session meet: small JSON files in the
user's private runtime directory (``<runtime>/claude/``).

- ``session-<pid>.json``, keyed by the Claude Code process (``$CLAUDE_PID``, else the nearest
  ancestor process named ``claude``): written by SessionStart with the agent id it derived, read
  by the monitor of the same session, which has no hook input to derive it from.
  `relayctl mcp` under the same Claude process reads it too (`current_agent`).
- ``agent-<id>.json``: what the monitor delivered last and when the user last prompted, so
  PermissionDenied can tell whether denied work came from a relayed message.

Files are written whole (a temp file renamed over), so a reader never sees half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from relayctl.providers.common import session_agent_id
from relayd.config import paths

CLAUDE_NAMES = ("claude", "claude.exe")


def state_dir() -> Path:
    folder = paths.runtime_dir() / "claude"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def claude_pid() -> int | None:
    """The Claude Code process this hook or monitor runs under."""
    explicit = os.environ.get("CLAUDE_PID", "").strip()
    if explicit.isdigit():
        return int(explicit)
    try:
        process = psutil.Process().parent()
        for _ in range(8):
            if process is None:
                return None
            name = process.name()
            if name in CLAUDE_NAMES or Path(_argv0(process)).name in CLAUDE_NAMES:
                return int(process.pid)
            process = process.parent()
    except (psutil.Error, OSError):
        return None
    return None


def _argv0(process: psutil.Process) -> str:
    try:
        cmdline = process.cmdline()
    except (psutil.Error, OSError):
        return ""
    return cmdline[0] if cmdline else ""


def _safe_name(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-@" else "_" for c in text)[:160]


def session_file(pid: int) -> Path:
    return state_dir() / f"session-{pid}.json"


def agent_file(agent_id: str) -> Path:
    return state_dir() / f"agent-{_safe_name(agent_id)}.json"


def read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write(path: Path, data: dict[str, Any]) -> None:
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temp, path)
    except OSError:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def update(path: Path, **changes: Any) -> dict[str, Any]:
    data = {**read(path), **changes}
    write(path, data)
    return data


def record_session(agent_id: str, session_id: str, cwd: str) -> Path | None:
    pid = claude_pid()
    if pid is None:
        return None
    path = session_file(pid)
    write(path, {"agentId": agent_id, "sessionId": session_id, "cwd": cwd,
                 "claudePid": pid, "at": time.time()})
    return path


def session_agent(pid: int | None) -> str | None:
    if pid is None:
        return None
    value = read(session_file(pid)).get("agentId")
    return value if isinstance(value, str) and value else None


def current_agent(env: Mapping[str, str], pid: int | None) -> str | None:
    """The agent a process of this Claude Code session (the monitor, `relayctl mcp`) acts
    for: AGENT_RELAY_AGENT_ID, else the id SessionStart recorded for the Claude process `pid`,
    else one derived from $CLAUDE_CODE_SESSION_ID; None while none of them is known."""
    explicit = env.get("AGENT_RELAY_AGENT_ID", "").strip()
    if explicit:
        return explicit
    recorded = session_agent(pid)
    if recorded:
        return recorded
    session = env.get("CLAUDE_CODE_SESSION_ID", "").strip()
    if session:
        return session_agent_id(session, env, Path.cwd())
    return None


def record_delivery(agent_id: str, message: dict[str, Any]) -> None:
    update(agent_file(agent_id), lastDelivered={
        "id": message.get("id"), "from": message.get("from"), "at": time.time()})


def record_prompt(agent_id: str) -> None:
    update(agent_file(agent_id), promptAt=time.time())
