"""systemd user unit: ~/.config/systemd/user/agent-relay.service, driven by `systemctl --user`."""

from __future__ import annotations

import getpass
import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path

from relayctl.service.manager import (
    Action,
    InstallOptions,
    ServiceStatus,
    require_installed,
    template_text,
)
from relayctl.service.plan import Plan, ServiceError, run_command, run_passthrough

UNIT_NAME = "agent-relay.service"
TEMPLATE = "systemd/agent-relay.service.in"
SHOW_PROPERTIES = "LoadState,ActiveState,SubState,UnitFileState,MainPID"
LINGER_NOTE = (
    "on a headless box (no login session), run `loginctl enable-linger {user}` so your user "
    "manager, and relayd with it, starts at boot and keeps running after you log out"
)
NO_USER_MANAGER = (
    "no systemd user manager answers here ({reason}; a container, or ssh without a login "
    "session): run `loginctl enable-linger {user}` and log in again, or run `relayd` in the "
    "foreground (under your own supervisor)"
)
_NEEDS_QUOTES = re.compile(r"[\s\"'\\;]")


def systemd_quote(arg: str) -> str:
    """One ExecStart= word: % and $ escaped (specifiers, variables), quoted when needed."""
    escaped = arg.replace("%", "%%").replace("$", "$$")
    if not escaped or _NEEDS_QUOTES.search(escaped):
        escaped = '"' + escaped.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return escaped


def render_unit(program: Sequence[str], environment: Mapping[str, str]) -> str:
    env_lines = "".join(
        f"Environment={systemd_quote(f'{key}={value}')}\n"
        for key, value in sorted(environment.items())
    )
    return string.Template(template_text(TEMPLATE)).substitute(
        exec_start=" ".join(systemd_quote(arg) for arg in program),
        environment=env_lines,
    )


def user_unit_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "systemd" / "user"


def _linger_enabled(user: str) -> bool:
    return Path("/var/lib/systemd/linger", user).exists()


class SystemdManager:
    name = "systemd"

    def unit_path(self) -> Path:
        return user_unit_dir() / UNIT_NAME

    def is_installed(self) -> bool:
        return self.unit_path().is_file()

    def _systemctl(self, *args: str) -> tuple[str, ...]:
        return ("systemctl", "--user", *args)

    def manager_problem(self) -> str | None:
        """Why `systemctl --user` cannot be used here (one line), or None when it answers."""
        result = run_command(self._systemctl("show", "--property=Version"), timeout=10)
        if result.returncode == 0:
            return None
        output = (result.stderr or result.stdout).strip().splitlines()
        reason = output[-1] if output else f"exit status {result.returncode}"
        return NO_USER_MANAGER.format(reason=reason.rstrip("."), user=getpass.getuser())

    def plan_install(self, options: InstallOptions) -> Plan:
        plan = Plan("install the systemd user service agent-relay.service")
        plan.blocker = self.manager_problem()  # asked before anything is written
        reinstall = self.is_installed()
        plan.write(self.unit_path(), render_unit(options.program, options.environment))
        plan.run(*self._systemctl("daemon-reload"))
        if options.enable:
            plan.run(*self._systemctl("enable", UNIT_NAME))
        if options.start:
            # A running relayd keeps its old unit settings until it is restarted.
            plan.run(*self._systemctl("restart" if reinstall else "start", UNIT_NAME))
        user = getpass.getuser()
        if not _linger_enabled(user):
            plan.notes.append(LINGER_NOTE.format(user=user))
        if not options.start:
            plan.notes.append("start it with `relayctl daemon start`")
        return plan

    def plan_uninstall(self) -> Plan:
        require_installed(self)
        plan = Plan("remove the systemd user service agent-relay.service")
        plan.run(*self._systemctl("disable", "--now", UNIT_NAME), allow_failure=True)
        plan.remove(self.unit_path())
        plan.run(*self._systemctl("daemon-reload"))
        return plan

    def plan_action(self, action: Action) -> Plan:
        require_installed(self)
        plan = Plan(f"{action} agent-relay.service")
        plan.run(*self._systemctl(action, UNIT_NAME))
        return plan

    def status(self) -> ServiceStatus:
        if not self.is_installed():
            return ServiceStatus(self.name, False, False, "not-installed")
        result = run_command(
            self._systemctl("show", UNIT_NAME, f"--property={SHOW_PROPERTIES}")
        )
        if result.returncode != 0:
            reason = (result.stderr or result.stdout).strip() or f"exit {result.returncode}"
            return ServiceStatus(
                self.name, True, False, "unknown", unit_path=self.unit_path(),
                detail=f"systemctl --user failed: {reason}",
            )
        props = dict(
            line.split("=", 1) for line in result.stdout.splitlines() if "=" in line
        )
        active = props.get("ActiveState", "unknown")
        pid = int(props.get("MainPID", "0") or 0)
        unit_state = props.get("UnitFileState", "")
        return ServiceStatus(
            backend=self.name,
            installed=True,
            running=active in ("active", "reloading"),
            state=active,
            enabled=unit_state in ("enabled", "enabled-runtime", "linked") if unit_state else None,
            pid=pid or None,
            unit_path=self.unit_path(),
            detail=props.get("SubState", ""),
        )

    def logs(self, lines: int, follow: bool) -> int:
        argv = ["journalctl", "--user", "-u", UNIT_NAME, "-n", str(lines), "--no-pager"]
        if follow:
            argv.append("-f")
        code = run_passthrough(argv)
        if code != 0:
            raise ServiceError(f"journalctl exited with status {code}")
        return 0
