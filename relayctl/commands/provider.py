"""`relayctl provider refresh`: bring the coding-agent providers in line with this relay.

For now this is the hook: it reports the providers it knows and what it finds of them (config
directory, CLI on PATH). Installing hooks and MCP entries into them comes in a later issue, in
``refresh_provider``.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayctl.argtypes import comma_or_many
from relayctl.main import CliError, ExitCode, emit


@dataclass(frozen=True)
class Provider:
    name: str
    cli: str  # the program a person runs
    home_env: str  # the variable that moves its config directory
    default_home: str  # relative to the home directory

    def config_dir(self) -> Path:
        override = os.environ.get(self.home_env)
        return Path(override).expanduser() if override else Path.home() / self.default_home


PROVIDERS: tuple[Provider, ...] = (
    Provider("claude-code", "claude", "CLAUDE_CONFIG_DIR", ".claude"),
    Provider("codex", "codex", "CODEX_HOME", ".codex"),
)
PROVIDER_NAMES = tuple(p.name for p in PROVIDERS)


def register(subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    provider = subparsers.add_parser(
        "provider",
        help="coding-agent providers (Claude Code, Codex)",
        description="Manage the coding-agent providers that talk to this relay.",
    )
    actions = provider.add_subparsers(dest="provider_action", metavar="ACTION")
    actions.required = True
    refresh = actions.add_parser(
        "refresh",
        parents=[common],
        help="check the known providers and refresh their relay integration",
        description="Report each known provider (" + ", ".join(PROVIDER_NAMES) + ") and its "
        "state, refreshing its relay integration where there is one.",
    )
    refresh.add_argument(
        "--providers",
        action="append",
        metavar="NAME[,NAME]",
        help="only these providers (repeatable or comma-separated; default: all)",
    )
    refresh.set_defaults(func=cmd_refresh)


def select(requested: Sequence[str] | None) -> list[Provider]:
    """The providers named (comma lists allowed), in the known order; unknown names are usage."""
    if not requested:
        return list(PROVIDERS)
    names = set(comma_or_many(list(requested)) or [])
    unknown = sorted(names - set(PROVIDER_NAMES))
    if unknown:
        raise CliError(
            f"unknown provider(s) {', '.join(unknown)}; known: {', '.join(PROVIDER_NAMES)}",
            ExitCode.USAGE,
        )
    return [p for p in PROVIDERS if p.name in names]


def inspect(provider: Provider) -> dict[str, Any]:
    config_dir = provider.config_dir()
    cli_path = shutil.which(provider.cli)
    detected = config_dir.is_dir() or cli_path is not None
    return {
        "name": provider.name,
        "configDir": str(config_dir),
        "configDirExists": config_dir.is_dir(),
        "cli": cli_path,
        "state": "detected" if detected else "not-found",
        "refreshed": False,
    }


def refresh_provider(provider: Provider, report: dict[str, Any]) -> dict[str, Any]:
    """The hook: nothing to install into providers yet, so nothing changes."""
    if report["state"] == "detected":
        report["action"] = "nothing to refresh yet"
    else:
        report["action"] = "skipped (not found)"
    return report


def cmd_refresh(args: argparse.Namespace) -> int:
    reports = [refresh_provider(p, inspect(p)) for p in select(args.providers)]
    lines = [
        f"{r['name']:<12} {r['state']:<10} {r['configDir']}"
        f"{'' if r['configDirExists'] else ' (missing)'}"
        f"{'  cli ' + r['cli'] if r['cli'] else ''}  → {r['action']}"
        for r in reports
    ]
    emit(args, {"providers": reports}, "\n".join(lines))
    return ExitCode.OK
