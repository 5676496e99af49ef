"""Installing the Claude Code plugin with the real `claude` CLI.

The package ships the plugin (``agent_relay_providers/claude``) and a marketplace next to it
(``agent_relay_providers/.claude-plugin/marketplace.json``); installing is what a person would
type: ``claude plugin marketplace add <that folder>`` and ``claude plugin install
agent-relay@agent-relay``. Refreshing also updates the marketplace and the plugin.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_VERSION = (2, 1, 105)
MARKETPLACE = "agent-relay"
PLUGIN_ID = "agent-relay@agent-relay"
COMMAND_TIMEOUT = 120.0


class InstallError(Exception):
    """A step failed; the message says which and what claude said."""


@dataclass(frozen=True)
class ClaudeCli:
    path: str | None
    version: tuple[int, ...] | None
    version_text: str | None

    @property
    def too_old(self) -> bool:
        return self.version is not None and self.version < MIN_VERSION

    def problem(self) -> str | None:
        """A clear line when this CLI cannot take the plugin; None when it can."""
        if self.path is None:
            return ("the `claude` CLI is not on PATH (set AGENT_RELAY_CLAUDE_BIN, or install "
                    "Claude Code: npm install -g @anthropic-ai/claude-code)")
        if self.version is None:
            return f"cannot tell the version of {self.path} (`claude --version` failed)"
        if self.too_old:
            return (f"Claude Code {self.version_text} is older than "
                    f"{'.'.join(map(str, MIN_VERSION))}, which the plugin needs; upgrade it "
                    "(claude update, or npm install -g @anthropic-ai/claude-code)")
        return None


def marketplace_root() -> Path:
    """The folder holding .claude-plugin/marketplace.json for the installed package."""
    import agent_relay_providers

    for folder in agent_relay_providers.__path__:
        root = Path(folder)
        if (root / ".claude-plugin" / "marketplace.json").is_file():
            return root
    raise InstallError("the installed package has no Claude Code plugin (broken install?)")


def plugin_version() -> str | None:
    try:
        manifest = marketplace_root() / "claude" / ".claude-plugin" / "plugin.json"
        value = json.loads(manifest.read_text(encoding="utf-8")).get("version")
    except (InstallError, OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def _env() -> dict[str, str]:
    return {**os.environ, "DISABLE_AUTOUPDATER": os.environ.get("DISABLE_AUTOUPDATER", "1")}


def find_cli() -> ClaudeCli:
    named = os.environ.get("AGENT_RELAY_CLAUDE_BIN", "").strip()
    path = shutil.which(named) if named else shutil.which("claude")
    if named and path is None and Path(named).is_file():
        path = named
    if path is None:
        return ClaudeCli(None, None, None)
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True,
                                timeout=30, env=_env(), check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ClaudeCli(path, None, None)
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", result.stdout)
    if result.returncode != 0 or match is None:
        return ClaudeCli(path, None, None)
    return ClaudeCli(path, tuple(int(p) for p in match.groups()), match.group(0))


def _run(cli: ClaudeCli, *args: str) -> str:
    assert cli.path is not None
    try:
        result = subprocess.run([cli.path, *args], capture_output=True, text=True,
                                timeout=COMMAND_TIMEOUT, env=_env(), check=False,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise InstallError(f"`claude {' '.join(args)}` did not finish in time") from None
    except OSError as exc:
        raise InstallError(f"cannot run {cli.path}: {exc.strerror or exc}") from None
    if result.returncode != 0:
        said = " ".join((result.stderr or result.stdout).split())[:300]
        raise InstallError(f"`claude {' '.join(args)}` failed: {said}")
    return result.stdout


def install(cli: ClaudeCli, refresh: bool = False) -> list[str]:
    """Add the marketplace and install the plugin (both idempotent); with refresh, also
    update them. The steps run, for the report."""
    problem = cli.problem()
    if problem:
        raise InstallError(problem)
    root = str(marketplace_root())
    steps = [("plugin", "marketplace", "add", root), ("plugin", "install", PLUGIN_ID)]
    if refresh:
        steps += [("plugin", "marketplace", "update", MARKETPLACE),
                  ("plugin", "update", PLUGIN_ID)]
    for step in steps:
        _run(cli, *step)
    return [" ".join(("claude", *step)) for step in steps]


def installed(cli: ClaudeCli) -> dict[str, Any] | None:
    """The plugin as `claude plugin list --json` reports it, or None."""
    if cli.problem():
        return None
    try:
        plugins = json.loads(_run(cli, "plugin", "list", "--json"))
    except (InstallError, ValueError):
        return None
    for plugin in plugins if isinstance(plugins, list) else []:
        if isinstance(plugin, dict) and plugin.get("id") == PLUGIN_ID:
            return plugin
    return None
