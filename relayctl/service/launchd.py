"""launchd LaunchAgent: ~/Library/LaunchAgents/dev.agentrelay.relayd.plist, via `launchctl`."""

from __future__ import annotations

import os
import plistlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from relayctl.service.manager import (
    Action,
    InstallOptions,
    ServiceStatus,
    print_log_file,
    require_installed,
    template_text,
)
from relayctl.service.plan import Plan, run_command
from relayd.config import paths

LABEL = "dev.agentrelay.relayd"
TEMPLATE = "launchd/dev.agentrelay.relayd.plist.in"
_PLACEHOLDER = re.compile(r"^@([A-Z_]+)@$")


def _placeholder(node: Any) -> str | None:
    match = _PLACEHOLDER.match(node) if isinstance(node, str) else None
    return match.group(1) if match else None


def fill(node: Any, values: Mapping[str, Any]) -> Any:
    """Replace @NAME@ markers in a parsed plist by values: a marker string, a list holding only
    a marker, or a dict whose only key is a marker stands for the whole value."""
    if isinstance(node, list):
        if len(node) == 1 and _placeholder(node[0]) in values:
            return values[_placeholder(node[0]) or ""]
        return [fill(item, values) for item in node]
    if isinstance(node, dict):
        if len(node) == 1 and _placeholder(next(iter(node))) in values:
            return values[_placeholder(next(iter(node))) or ""]
        return {key: fill(value, values) for key, value in node.items()}
    name = _placeholder(node)
    if name is not None:
        if name not in values:
            raise KeyError(f"launchd template placeholder @{name}@ has no value")
        return values[name]
    return node


def log_paths() -> tuple[Path, Path]:
    directory = paths.log_dir()
    return directory / "relayd.out.log", directory / "relayd.err.log"


def render_plist(program: Sequence[str], environment: Mapping[str, str]) -> str:
    template = plistlib.loads(template_text(TEMPLATE).encode("utf-8"))
    stdout_path, stderr_path = log_paths()
    data = fill(
        template,
        {
            "LABEL": LABEL,
            "PROGRAM_ARGUMENTS": list(program),
            "STDOUT_PATH": str(stdout_path),
            "STDERR_PATH": str(stderr_path),
            "ENVIRONMENT": dict(environment),
        },
    )
    return plistlib.dumps(data, sort_keys=False).decode("utf-8")


def parse_print(output: str) -> dict[str, str]:
    """`launchctl print` fields; the first occurrence wins (nested sections repeat keys)."""
    fields: dict[str, str] = {}
    for line in output.splitlines():
        key, sep, value = line.strip().partition(" = ")
        if sep and value:
            fields.setdefault(key, value.strip())
    return fields


class LaunchdManager:
    name = "launchd"

    def __init__(self) -> None:
        uid = os.getuid() if hasattr(os, "getuid") else 0
        self.domain = f"gui/{uid}"
        self.target = f"{self.domain}/{LABEL}"

    def unit_path(self) -> Path:
        return Path.home() / "Library" / "LaunchAgents" / f"{LABEL}.plist"

    def is_installed(self) -> bool:
        return self.unit_path().is_file()

    def _print(self) -> tuple[bool, str]:
        result = run_command(("launchctl", "print", self.target))
        return result.returncode == 0, result.stdout

    def is_loaded(self) -> bool:
        return self._print()[0]

    def plan_install(self, options: InstallOptions) -> Plan:
        plan = Plan(f"install the launchd agent {LABEL}")
        plan.mkdir(paths.log_dir())
        plan.write(self.unit_path(), render_plist(options.program, options.environment))
        if options.enable:
            plan.run("launchctl", "enable", self.target)
        if options.start:
            if self.is_loaded():
                # launchd keeps the loaded copy of the plist: unload it so the new one counts.
                plan.run("launchctl", "bootout", self.target, allow_failure=True)
            plan.run("launchctl", "bootstrap", self.domain, str(self.unit_path()))
        else:
            plan.notes.append(
                "the agent loads at your next login; start it now with `relayctl daemon start`"
            )
        return plan

    def plan_uninstall(self) -> Plan:
        require_installed(self)
        plan = Plan(f"remove the launchd agent {LABEL}")
        plan.run("launchctl", "bootout", self.target, allow_failure=True)
        plan.remove(self.unit_path())
        return plan

    def plan_action(self, action: Action) -> Plan:
        require_installed(self)
        plan = Plan(f"{action} the launchd agent {LABEL}")
        if action in ("start", "restart"):
            if not self.is_loaded():
                plan.run("launchctl", "bootstrap", self.domain, str(self.unit_path()))
            elif action == "start":
                plan.run("launchctl", "kickstart", self.target)
            else:
                plan.run("launchctl", "kickstart", "-k", self.target)
        elif action == "stop":
            # KeepAlive would bring a killed relayd back: unloading is what stops it.
            plan.run("launchctl", "bootout", self.target)
        else:
            plan.run("launchctl", action, self.target)
            if action == "disable":
                plan.notes.append("a running relayd keeps running; `relayctl daemon stop` stops it")
        return plan

    def status(self) -> ServiceStatus:
        if not self.is_installed():
            return ServiceStatus(self.name, False, False, "not-installed")
        loaded, output = self._print()
        fields = parse_print(output)
        state = fields.get("state", "running" if "pid" in fields else "not-loaded")
        if not loaded:
            state = "not-loaded"
        pid = fields.get("pid", "")
        return ServiceStatus(
            backend=self.name,
            installed=True,
            running=loaded and state == "running",
            state=state,
            enabled=self._enabled(),
            pid=int(pid) if pid.isdigit() else None,
            unit_path=self.unit_path(),
        )

    def _enabled(self) -> bool | None:
        result = run_command(("launchctl", "print-disabled", self.domain))
        for line in result.stdout.splitlines():
            key, _, value = line.strip().partition(" => ")
            if key.strip('"') == LABEL:
                # Older macOS prints `=> true` for disabled, newer prints `=> disabled`.
                return value.strip() in ("enabled", "false")
        return True if result.returncode == 0 else None

    def logs(self, lines: int, follow: bool) -> int:
        return print_log_file(log_paths()[1], lines, follow)
