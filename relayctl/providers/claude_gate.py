"""The approval gate of a Claude Code session (its PreToolUse hook).

``open`` lets every tool through (the hook prints nothing). ``read-only`` denies the tools that
change files or run commands (Edit, Write, MultiEdit, NotebookEdit, Bash), except Bash
commands made only of commands on READ_ONLY_COMMANDS, with no redirection, no substitution
and no variable assignment; they may be chained with ``|``, ``&&``, ``||`` or ``;`` as long as
every command in the chain is on the list. ``guarded`` asks the person (``ask``) wherever
``read-only`` would deny.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GATED_TOOLS = ("Edit", "Write", "MultiEdit", "NotebookEdit", "Bash")

# Commands that only read. Options that make one of them write or run another program are
# refused in FORBIDDEN_OPTIONS.
READ_ONLY_COMMANDS = frozenset({
    "cat", "head", "tail", "wc", "ls", "tree", "pwd", "stat", "file", "du", "df",
    "grep", "egrep", "fgrep", "rg", "find", "which", "whoami", "id", "uname", "date",
    "hostname", "echo", "printf", "true", "false", "test", "[", "basename", "dirname",
    "realpath", "readlink", "sort", "uniq", "cut", "tr", "diff", "cmp", "comm", "nl", "jq",
    "sha256sum", "md5sum", "git", "relayctl",
})
GIT_READ_ONLY = frozenset({
    "status", "log", "diff", "show", "blame", "rev-parse", "ls-files", "grep", "describe",
    "shortlog", "reflog", "cat-file", "ls-tree", "branch", "tag", "remote",
})
RELAYCTL_READ_ONLY = frozenset({"inbox", "agents", "status", "tasks", "watch"})
FORBIDDEN_OPTIONS: Mapping[str, tuple[str, ...]] = {
    "find": ("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0",
             "-fprintf", "-fls"),
    "sort": ("-o", "--output"),
    "rg": ("--pre",),
    "git": ("--output", "--ext-diff", "--exec", "-c", "-C", "--git-dir", "--work-tree",
            "-d", "-D", "--delete", "-m", "-M", "--move", "--set-upstream", "-u", "add",
            "remove", "rm", "rename", "set-url", "prune", "-f", "--force"),
    "date": ("-s", "--set"),
    "hostname": ("-F", "--file", "-b", "--boot"),
}
# Characters that redirect, substitute, background or expand into something else.
_UNSAFE_TEXT = re.compile(r"[<>`]|\$\(|\$\{|(?<!&)&(?!&)|\n|\r")
_SEPARATORS = frozenset({"|", "||", "&&", ";"})


@dataclass(frozen=True)
class Decision:
    permission: str  # "deny" or "ask"
    reason: str


def decide(approval: str, tool_name: str, tool_input: Mapping[str, Any]) -> Decision | None:
    """What the PreToolUse hook answers; None: no opinion (Claude's own rules apply)."""
    if approval not in ("read-only", "guarded") or tool_name not in GATED_TOOLS:
        return None
    if tool_name == "Bash":
        command = tool_input.get("command")
        problem = bash_problem(command if isinstance(command, str) else "")
        if problem is None:
            return None
        what = f"the Bash command ({problem})"
    else:
        what = f"{tool_name} (it changes files)"
    if approval == "read-only":
        return Decision("deny", f"Agent Relay approval mode is read-only: {what} is not "
                        "allowed in this session. Read-only commands only: "
                        + ", ".join(sorted(READ_ONLY_COMMANDS)) + ".")
    return Decision("ask", f"Agent Relay approval mode is guarded: {what} needs a person's "
                    "approval.")


def bash_problem(command: str) -> str | None:
    """None when every command in it is read-only; else why not, in a few words."""
    if not command.strip():
        return "empty command"
    if _UNSAFE_TEXT.search(command):
        return "redirection, substitution, background jobs or several lines"
    try:
        lexer = shlex.shlex(command, posix=True, punctuation_chars=";&|")
        lexer.whitespace_split = True
        tokens = list(lexer)
    except ValueError:
        return "it cannot be parsed"
    segment: list[str] = []
    for token in [*tokens, ";"]:
        if token in _SEPARATORS or set(token) <= set(";&|"):
            if token not in _SEPARATORS:
                return f"the operator {token!r}"
            problem = _segment_problem(segment) if segment else None
            if problem:
                return problem
            segment = []
        else:
            segment.append(token)
    return None


def _segment_problem(words: list[str]) -> str | None:
    name = words[0]
    if "=" in name:
        return "a variable assignment"
    if name not in READ_ONLY_COMMANDS:
        return f"{name!r} is not on the read-only list"
    args = words[1:]
    forbidden = FORBIDDEN_OPTIONS.get(name, ())
    for arg in args:
        if any(arg == f or arg.startswith(f + "=") for f in forbidden):
            return f"{name} {arg} can change things"
        if name == "find" and arg.startswith("-fprint"):
            return f"find {arg} writes files"
    if name == "git":
        if not args or args[0] not in GIT_READ_ONLY:
            return "only read-only git subcommands (" + ", ".join(sorted(GIT_READ_ONLY)) + ")"
        if args[0] in ("branch", "tag", "remote") and any(
                not a.startswith("-") for a in args[1:]) and args[0] != "remote":
            return f"git {args[0]} with a name creates it"
    if name == "relayctl" and (not args or args[0] not in RELAYCTL_READ_ONLY):
        return "only relayctl " + ", ".join(sorted(RELAYCTL_READ_ONLY))
    return None


def describe_list() -> str:
    """The read-only list for docs and messages."""
    return ", ".join(sorted(READ_ONLY_COMMANDS))

