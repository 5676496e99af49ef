"""Windows: a per-user Task Scheduler task "AgentRelay" that starts relayd at logon (schtasks).

asyncio has no Unix sockets on Windows, so relayd's control plane there is loopback TCP with a
per-start token (control_transport defaults to "tcp" there); the task needs no setting for it.
"""

from __future__ import annotations

import getpass
import os
import string
import subprocess
from collections.abc import Sequence
from pathlib import Path
from xml.sax.saxutils import escape

from relayctl.service.manager import (
    Action,
    InstallOptions,
    ServiceStatus,
    print_log_file,
    require_installed,
    template_text,
)
from relayctl.service.plan import Plan, run_command
from relayd.config import paths, settings

TASK_NAME = "AgentRelay"
TEMPLATE = "windows/agent-relay-task.xml.in"
# schtasks reads task XML reliably only as UTF-16 (the template declares it).
TASK_XML_ENCODING = "utf-16"


def task_user() -> str:
    user = os.environ.get("USERNAME") or getpass.getuser()
    domain = os.environ.get("USERDOMAIN")
    return f"{domain}\\{user}" if domain else user


def render_task_xml(program: Sequence[str]) -> str:
    return string.Template(template_text(TEMPLATE)).substitute(
        user_id=escape(task_user()),
        command=escape(program[0]),
        arguments=escape(subprocess.list2cmdline(list(program[1:]))),
    )


def configured_log_file() -> Path | None:
    """relayd's log_file setting, when the config (or environment) sets one."""
    try:
        return settings.load().log_file
    except settings.SettingsError:
        return None


class WindowsTaskManager:
    name = "windows"

    def unit_path(self) -> Path:
        return paths.data_dir() / "agent-relay-task.xml"

    def is_installed(self) -> bool:
        return self.unit_path().is_file()

    def _schtasks(self, *args: str) -> tuple[str, ...]:
        return ("schtasks", *args)

    def plan_install(self, options: InstallOptions) -> Plan:
        plan = Plan(f"register the Task Scheduler task {TASK_NAME} (runs relayd at logon)")
        plan.write(self.unit_path(), render_task_xml(options.program), encoding=TASK_XML_ENCODING)
        plan.run(*self._schtasks("/Create", "/XML", str(self.unit_path()), "/TN", TASK_NAME, "/F"))
        if options.enable:
            plan.run(*self._schtasks("/Change", "/TN", TASK_NAME, "/ENABLE"))
        if options.start:
            plan.run(*self._schtasks("/Run", "/TN", TASK_NAME))
        if configured_log_file() is None:
            plan.notes.append(
                "Task Scheduler keeps no output: set log_file in the config file (e.g. "
                f'log_file = "{paths.default_log_file()}") so relayd writes a log that '
                "`relayctl daemon logs` can show"
            )
        if options.environment:
            plan.notes.append(
                "Task Scheduler tasks take no environment variables: put settings in the "
                "config file instead ("
                + ", ".join(sorted(options.environment))
                + " are not passed)"
            )
        return plan

    def plan_uninstall(self) -> Plan:
        require_installed(self)
        plan = Plan(f"delete the Task Scheduler task {TASK_NAME}")
        plan.run(*self._schtasks("/End", "/TN", TASK_NAME), allow_failure=True)
        plan.run(*self._schtasks("/Delete", "/TN", TASK_NAME, "/F"))
        plan.remove(self.unit_path())
        return plan

    def plan_action(self, action: Action) -> Plan:
        require_installed(self)
        plan = Plan(f"{action} the Task Scheduler task {TASK_NAME}")
        if action in ("stop", "restart"):
            plan.run(*self._schtasks("/End", "/TN", TASK_NAME), allow_failure=action == "restart")
        if action in ("start", "restart"):
            plan.run(*self._schtasks("/Run", "/TN", TASK_NAME))
        if action in ("enable", "disable"):
            plan.run(*self._schtasks("/Change", "/TN", TASK_NAME, f"/{action.upper()}"))
        return plan

    def status(self) -> ServiceStatus:
        if not self.is_installed():
            return ServiceStatus(self.name, False, False, "not-installed")
        result = run_command(self._schtasks("/Query", "/TN", TASK_NAME, "/FO", "LIST", "/V"))
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            return ServiceStatus(
                self.name, True, False, "unknown", unit_path=self.unit_path(),
                detail=f"schtasks failed: {reason}",
            )
        fields: dict[str, str] = {}
        for line in result.stdout.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
        state = fields.get("Status", "unknown")
        task_state = fields.get("Scheduled Task State", "")
        return ServiceStatus(
            backend=self.name,
            installed=True,
            running=state == "Running",
            state=state,
            enabled=(task_state == "Enabled") if task_state else None,
            unit_path=self.unit_path(),
        )

    def logs(self, lines: int, follow: bool) -> int:
        return print_log_file(configured_log_file() or paths.default_log_file(), lines, follow)
