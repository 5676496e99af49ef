"""The Claude Code approval gate: what read-only denies, guarded asks, open lets through."""

from __future__ import annotations

import pytest

from relayctl.providers.claude_gate import bash_problem, decide

READ_ONLY_OK = [
    "ls -la", "git status", "git log --oneline | head -5", "ls -la && cat README.md",
    "grep -rn TODO . | wc -l", "find . -name '*.py'", "git diff HEAD~1 -- src", "pwd; date",
    "relayctl inbox --unread", "rg foo src || true", "git branch",
]
NOT_READ_ONLY = [
    "rm -rf build", "git status && rm x", "ls > files.txt", "cat a >> b", "echo $(touch x)",
    "echo `id`", "cat a | tee b", "find . -delete", "find . -exec rm {} +", "FOO=1 ls",
    "ls &", "ls\nrm x", "sort -o out a", "git -c core.pager=rm log", "git commit -m x",
    "git branch new", "python x.py", "relayctl send x y", "sh -c ls", "cat <(rm x)",
    "xargs rm", "env rm x", "", "git diff --output=x", "rg --pre rm x", "ls 'unclosed",
]


@pytest.mark.parametrize("command", READ_ONLY_OK)
def test_read_only_commands_pass(command: str) -> None:
    assert bash_problem(command) is None
    assert decide("read-only", "Bash", {"command": command}) is None


@pytest.mark.parametrize("command", NOT_READ_ONLY)
def test_commands_that_change_things_are_denied_or_asked(command: str) -> None:
    assert bash_problem(command) is not None
    denied = decide("read-only", "Bash", {"command": command})
    asked = decide("guarded", "Bash", {"command": command})
    assert denied is not None and denied.permission == "deny"
    assert asked is not None and asked.permission == "ask"
    assert decide("open", "Bash", {"command": command}) is None


@pytest.mark.parametrize("tool", ["Edit", "Write", "MultiEdit", "NotebookEdit"])
def test_file_tools(tool: str) -> None:
    assert decide("read-only", tool, {}).permission == "deny"  # type: ignore[union-attr]
    assert decide("guarded", tool, {}).permission == "ask"  # type: ignore[union-attr]
    assert decide("open", tool, {}) is None
    assert decide("read-only", "Read", {"file_path": "x"}) is None
    assert decide("read-only", "Bash", {"command": 5}) is not None  # malformed input: gated
