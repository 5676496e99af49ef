"""Service managers: what every backend offers, and the helpers the backends share.

Every action is "plan first, then act": a backend turns an action into a ``Plan`` (files to
write or remove, commands to run, notes for the person), relayctl shows it, and ``execute``
carries it out. Nothing touches the system while a plan is built, except read-only queries.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from relayctl.service.plan import Plan, ServiceError

BACKEND_ENV = "AGENT_RELAY_SERVICE_BACKEND"
BACKENDS = ("systemd", "launchd", "windows")

Action = Literal["start", "stop", "restart", "enable", "disable"]
ACTIONS: tuple[Action, ...] = ("start", "stop", "restart", "enable", "disable")



@dataclass(frozen=True)
class ServiceStatus:
    backend: str
    installed: bool
    running: bool
    state: str  # the manager's own word: active, inactive, failed, running, Ready, ...
    enabled: bool | None = None
    pid: int | None = None
    unit_path: Path | None = None
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "installed": self.installed,
            "running": self.running,
            "state": self.state,
            "enabled": self.enabled,
            "pid": self.pid,
            "unitPath": str(self.unit_path) if self.unit_path else None,
            "detail": self.detail,
        }

    def summary(self) -> str:
        if not self.installed:
            return f"{self.backend}: not installed (run `relayctl daemon install`)"
        enabled = {True: ", enabled", False: ", disabled", None: ""}[self.enabled]
        pid = f", pid {self.pid}" if self.pid else ""
        return f"{self.backend}: {self.state}{enabled}{pid} ({self.unit_path})"


@dataclass(frozen=True)
class InstallOptions:
    program: tuple[str, ...]  # the absolute relayd command line
    enable: bool = False
    start: bool = False
    environment: Mapping[str, str] = field(default_factory=dict)


class ServiceManager(Protocol):
    name: str

    def unit_path(self) -> Path: ...

    def is_installed(self) -> bool: ...

    def plan_install(self, options: InstallOptions) -> Plan: ...

    def plan_uninstall(self) -> Plan: ...

    def plan_action(self, action: Action) -> Plan: ...

    def status(self) -> ServiceStatus: ...

    def logs(self, lines: int, follow: bool) -> int: ...


# ----------------------------------------------------------------------------- helpers


def default_program(binary: str | None = None) -> tuple[str, ...]:
    """The absolute relayd command line a service runs.

    ``--binary`` wins; else the relayd script next to this Python (same install, even when
    another relayd is first on PATH); else relayd on PATH; else this Python with -m.
    """
    if binary:
        path = Path(binary).expanduser().absolute()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ServiceError(f"--binary {path} is not an executable file")
        return (str(path),)
    script = "relayd.exe" if sys.platform == "win32" else "relayd"
    sibling = Path(sys.executable).absolute().parent / script
    if sibling.is_file():
        return (str(sibling),)
    on_path = shutil.which("relayd")
    if on_path:
        return (str(Path(on_path).absolute()),)
    return (str(Path(sys.executable).absolute()), "-m", "relayd.main")


def require_installed(manager: ServiceManager) -> None:
    if not manager.is_installed():
        raise ServiceError(
            f"the {manager.name} service is not installed ({manager.unit_path()}); "
            "run `relayctl daemon install` first"
        )


def template_text(relative: str) -> str:
    """A template from the top-level packaging/ folder, shipped in the wheel as the namespace
    package ``agent_relay_packaging``.

    packaging/ has no __init__.py (a regular package named ``packaging`` at the checkout root
    would shadow PyPA's), so we walk the namespace ``__path__``: importlib.resources cannot
    read a namespace package of an editable install on Python 3.11.
    """
    import agent_relay_packaging

    for folder in agent_relay_packaging.__path__:
        candidate = Path(folder) / relative
        if candidate.is_file():
            return candidate.read_text("utf-8")
    raise ServiceError(f"the service template {relative} is missing from this installation")


def tail_lines(path: Path, count: int) -> list[str]:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as fh:
            return [line.rstrip("\n") for line in deque(fh, maxlen=count)] if count > 0 else []
    except FileNotFoundError:
        return []


def follow_file(path: Path, poll_seconds: float = 0.5) -> Iterator[str]:
    """Yield lines appended to a log file from now on, until interrupted."""
    import time

    with path.open("r", encoding="utf-8", errors="replace") as fh:
        fh.seek(0, os.SEEK_END)
        while True:
            line = fh.readline()
            if line:
                yield line.rstrip("\n")
            else:
                time.sleep(poll_seconds)


def print_log_file(path: Path, lines: int, follow: bool) -> int:
    if not path.exists():
        raise ServiceError(f"no log file yet at {path}")
    for line in tail_lines(path, lines):
        print(line)
    if follow:
        sys.stdout.flush()
        for line in follow_file(path):
            print(line, flush=True)
    return 0


# ----------------------------------------------------------------------------- choosing


def backend_name(platform: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """Which backend serves this machine: the env override, else by platform."""
    env = os.environ if env is None else env
    forced = env.get(BACKEND_ENV, "").strip().lower()
    if forced:
        if forced not in BACKENDS:
            raise ServiceError(
                f"{BACKEND_ENV}={forced!r} is not one of {', '.join(BACKENDS)}"
            )
        return forced
    platform = sys.platform if platform is None else platform
    if platform == "darwin":
        return "launchd"
    if platform == "win32":
        return "windows"
    if platform.startswith("linux") and shutil.which("systemctl"):
        return "systemd"
    return None
