"""`relayctl provider install|status|refresh`: the coding-agent providers and this relay.

`install NAME` installs one provider's relay integration (``INSTALLERS``: codex →
relayctl.providers.codex.install; claude → relayctl.providers.claude_install, with the real
`claude` CLI); `status` reports what is installed and at which version; `refresh` (also run by
`relayctl upgrade`) reports every known provider and brings an installed integration up to date.
"""

from __future__ import annotations

import argparse
import os
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relayctl.argtypes import comma_or_many
from relayctl.cli import CliError, ExitCode, emit


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
ALIASES = {"claude": "claude-code"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
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
    install = actions.add_parser(
        "install",
        parents=[common],
        help="install the relay integration into a provider (claude, codex)",
        description="Install the relay integration into a provider. claude (or claude-code): "
        "add the plugin marketplace shipped with this package and install the agent-relay "
        "plugin with the `claude` CLI (AGENT_RELAY_CLAUDE_BIN, else claude on PATH). codex: "
        "the agent-relay plugin (skill and SessionStart hook) into CODEX_HOME, keeping the "
        "other settings of its config.toml.",
    )
    install.add_argument("name", metavar="PROVIDER",
                         choices=sorted({*INSTALLERS, "claude", "claude-code"}),
                         help="the provider: claude, codex")
    install.set_defaults(func=cmd_install)
    status = actions.add_parser(
        "status", parents=[common], help="what is installed into each provider",
        description="Report each provider: whether its CLI is there and recent enough, and "
        "whether the relay integration is installed, at which version.",
    )
    status.add_argument(
        "--providers", action="append", metavar="NAME[,NAME]",
        help="only these providers (repeatable or comma-separated; default: all)",
    )
    status.set_defaults(func=cmd_status)


def select(requested: Sequence[str] | None) -> list[Provider]:
    """The providers named (comma lists allowed), in the known order; unknown names are usage."""
    if not requested:
        return list(PROVIDERS)
    names = {ALIASES.get(n, n) for n in comma_or_many(list(requested)) or []}
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


def install_codex(refresh: bool) -> dict[str, Any] | None:
    """Install the Codex plugin; with refresh, only bring an existing install up to date."""
    from relayctl.providers.codex import install as codex_install

    try:
        if refresh and not codex_install.is_installed(codex_install.codex_home()):
            return None
        return codex_install.install()
    except (codex_install.InstallError, OSError) as exc:
        raise CliError(f"codex: {exc}") from None


INSTALLERS: dict[str, Callable[[bool], dict[str, Any] | None]] = {"codex": install_codex}


def cmd_install(args: argparse.Namespace) -> int:
    if ALIASES.get(args.name, args.name) == "claude-code":
        return cmd_install_claude(args)
    result = INSTALLERS[args.name](False) or {}
    human = (f"{args.name}: agent-relay plugin {result.get('version')} installed in "
             f"{result.get('codexHome')}"
             + ("" if result.get("configChanged") else " (config.toml already up to date)"))
    emit(args, {"provider": args.name, **result}, human)
    return ExitCode.OK


def refresh_provider(provider: Provider, report: dict[str, Any]) -> dict[str, Any]:
    """Bring an installed integration up to date; providers without one: nothing changes."""
    if provider.name == "claude-code":
        return _refresh_claude(report)
    installer = INSTALLERS.get(provider.name)
    if installer is not None and report["state"] == "detected":
        result = installer(True)
        report["refreshed"] = result is not None
        report["action"] = (f"plugin {result['version']} refreshed" if result
                            else "not installed (relayctl provider install " + provider.name
                            + ")")
        return report
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


# ----------------------------------------------------------------------------- Claude Code


def _claude_report(report: dict[str, Any]) -> dict[str, Any]:
    from relayctl.providers import claude_install

    cli = claude_install.find_cli()
    plugin = claude_install.installed(cli)
    report.update(
        cli=cli.path, cliVersion=cli.version_text, problem=cli.problem(),
        pluginInstalled=plugin is not None,
        pluginVersion=(plugin or {}).get("version"),
        pluginEnabled=(plugin or {}).get("enabled"),
        packagedVersion=claude_install.plugin_version(),
    )
    return report


def _refresh_claude(report: dict[str, Any]) -> dict[str, Any]:
    from relayctl.providers import claude_install

    _claude_report(report)
    if report["problem"] or not report["pluginInstalled"]:
        report["action"] = ("skipped: " + report["problem"] if report["problem"] else
                            "plugin not installed (relayctl provider install claude)")
        return report
    try:
        claude_install.install(claude_install.find_cli(), refresh=True)
    except claude_install.InstallError as exc:
        report["action"] = f"refresh failed: {exc}"
        return report
    report["refreshed"] = True
    report["action"] = "plugin refreshed"
    return report


def _claude_line(report: dict[str, Any]) -> str:
    if report.get("problem"):
        return f"claude-code  {report['problem']}"
    if report.get("pluginInstalled"):
        enabled = "" if report.get("pluginEnabled") is not False else " (disabled)"
        return (f"claude-code  plugin agent-relay {report.get('pluginVersion')} installed"
                f"{enabled}; Claude Code {report.get('cliVersion')} at {report.get('cli')}")
    return (f"claude-code  plugin not installed (relayctl provider install claude); Claude "
            f"Code {report.get('cliVersion')} at {report.get('cli')}")


def cmd_install_claude(args: argparse.Namespace) -> int:
    from relayctl.providers import claude_install

    cli = claude_install.find_cli()
    try:
        steps = claude_install.install(cli)
    except claude_install.InstallError as exc:
        raise CliError(f"cannot install the Claude Code plugin: {exc}") from None
    plugin = claude_install.installed(cli) or {}
    data = {"provider": "claude-code", "steps": steps, "cli": cli.path,
            "cliVersion": cli.version_text, "plugin": plugin}
    emit(args, data, f"installed the agent-relay plugin {plugin.get('version', '')} into "
         f"Claude Code {cli.version_text} ({cli.path}); it takes effect in new sessions")
    return ExitCode.OK


def _codex_status(report: dict[str, Any]) -> str:
    """Add the Codex plugin's state to report; its human line."""
    from relayctl.providers.codex import install as codex_install

    report.update(codex_install.status())
    if report["installed"]:
        plugin = f"plugin {report['pluginVersion']} installed" + (
            "" if report["upToDate"] else " (outdated: relayctl provider refresh)")
    else:
        plugin = "plugin not installed (relayctl provider install codex)"
    return (f"{report['name']:<12} {report['state']}"
            f"{'  cli ' + report['cli'] if report['cli'] else ''}  {plugin}")


def cmd_status(args: argparse.Namespace) -> int:
    reports = []
    lines = []
    for provider in select(args.providers):
        report = inspect(provider)
        if provider.name == "claude-code":
            _claude_report(report)
            lines.append(_claude_line(report))
        elif provider.name == "codex":
            lines.append(_codex_status(report))
        else:
            lines.append(f"{provider.name:<12} {report['state']}"
                         f"{'  cli ' + report['cli'] if report['cli'] else ''}")
        reports.append(report)
    emit(args, {"providers": reports}, "\n".join(lines))
    return ExitCode.OK
