"""Helpers for the Claude Code provider tests: hook runs with Claude's real hook JSON."""

from __future__ import annotations

import json
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.helpers import RELAYCTL, cli_env

SESSION_ID = "6f1c2b9e-3a47-4d2e-9b1a-0c8e5f7a2d41"


def hook_env(tmp: Path, url: str, **extra: str) -> dict[str, str]:
    env = cli_env(tmp, AGENT_RELAY_URL=url, HOME=str(tmp / "home"), CLAUDE_PID="424242",
                  AGENT_RELAY_PROFILES_FILE=str(tmp / "no-profiles.toml"), **extra)
    env.pop("AGENT_RELAY_PROFILES_FILE")
    (tmp / "home").mkdir(exist_ok=True)
    return env


def payload(event: str, cwd: Path, **fields: Any) -> dict[str, Any]:
    """The common fields Claude Code sends to every hook, plus the event's own."""
    return {"session_id": SESSION_ID, "transcript_path": str(cwd / "t.jsonl"),
            "cwd": str(cwd), "permission_mode": "default", "hook_event_name": event, **fields}


@dataclass
class HookResult:
    code: int
    stdout: str
    stderr: str
    seconds: float

    def answer(self) -> dict[str, Any] | None:
        return json.loads(self.stdout) if self.stdout.strip() else None


def run_hook(env: dict[str, str], event: str, stdin: str | dict[str, Any],
             argv: list[str] | None = None) -> HookResult:
    text = stdin if isinstance(stdin, str) else json.dumps(stdin)
    started = time.monotonic()
    result = subprocess.run(argv or [RELAYCTL, "claude", "hook", event], input=text,
                            env=env, capture_output=True, text=True, timeout=20)
    seconds = time.monotonic() - started
    hook = HookResult(result.returncode, result.stdout, result.stderr, seconds)
    # what every hook run must hold, whatever happened
    assert hook.code == 0, hook
    assert hook.seconds < 5.0, hook
    assert len(hook.stderr.splitlines()) <= 1, hook
    if hook.stdout.strip():
        answer = hook.answer()
        assert isinstance(answer, dict) and "hookSpecificOutput" in answer, hook
        assert answer["hookSpecificOutput"]["hookEventName"] == event, hook
    return hook
