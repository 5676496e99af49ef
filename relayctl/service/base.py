"""Service managers: what every backend offers, plans, and the one place that picks a backend.

Every action is "plan first, then act": a backend turns an action into a ``Plan`` (files to
write or remove, commands to run, notes for the person), relayctl shows it, and ``execute``
carries it out. Nothing touches the system while a plan is built, except read-only queries.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

BACKEND_ENV = "AGENT_RELAY_SERVICE_BACKEND"
BACKENDS = ("systemd", "launchd", "windows")
COMMAND_TIMEOUT = 30.0

Action = Literal["start", "stop", "restart", "enable", "disable"]
ACTIONS: tuple[Action, ...] = ("start", "stop", "restart", "enable", "disable")


class ServiceError(Exception):
    """A service-manager step failed; the message says which and what to do."""


@dataclass(frozen=True)
class FileWrite:
    path: Path
    content: str
    mode: int = 0o644
    encoding: str = "utf-8"

    def describe(self) -> str:
        return f"write  {self.path} (mode {self.mode:04o})"


@dataclass(frozen=True)
class MakeDir:
    path: Path
    mode: int = 0o700

    def describe(self) -> str:
        return f"mkdir  {self.path}"


@dataclass(frozen=True)
class RemoveFile:
    path: Path

    def describe(self) -> str:
        return f"remove {self.path}"


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    # Some steps are best effort, e.g. stopping a service that may not be loaded on uninstall.
    allow_failure: bool = False

    def describe(self) -> str:
        suffix = "   (may fail)" if self.allow_failure else ""
        return f"run    {shlex.join(self.argv)}{suffix}"


Step = FileWrite | MakeDir | RemoveFile | Command


@dataclass
class Plan:
    """What an action will do, as ordered steps, plus notes for the person."""

    title: str
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Why the plan cannot work on this machine (one line): refused before any step runs,
    # shown as a warning by --dry-run.
    blocker: str | None = None

    def write(self, path: Path, content: str, mode: int = 0o644, encoding: str = "utf-8") -> None:
        self.steps.append(FileWrite(path, content, mode, encoding))

    def mkdir(self, path: Path, mode: int = 0o700) -> None:
        self.steps.append(MakeDir(path, mode))

    def remove(self, path: Path) -> None:
        self.steps.append(RemoveFile(path))

    def run(self, *argv: str, allow_failure: bool = False) -> None:
        self.steps.append(Command(tuple(argv), allow_failure))

    @property
    def commands(self) -> list[Command]:
        return [step for step in self.steps if isinstance(step, Command)]

    @property
    def writes(self) -> list[FileWrite]:
        return [step for step in self.steps if isinstance(step, FileWrite)]

    def render(self, with_contents: bool = False) -> str:
        lines = [f"Plan: {self.title}"]
        for step in self.steps:
            lines.append(f"  {step.describe()}")
            if with_contents and isinstance(step, FileWrite):
                lines.extend(f"         | {line}" for line in step.content.splitlines())
        if not self.steps:
            lines.append("  (nothing to do)")
        lines.extend(f"Note: {note}" for note in self.notes)
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "steps": [_step_json(step) for step in self.steps],
            "writes": [
                {"path": str(w.path), "mode": f"{w.mode:04o}", "content": w.content}
                for w in self.writes
            ],
            "commands": [list(c.argv) for c in self.commands],
            "notes": list(self.notes),
            "blocker": self.blocker,
        }


def _step_json(step: Step) -> dict[str, Any]:
    if isinstance(step, FileWrite):
        return {"write": str(step.path), "mode": f"{step.mode:04o}"}
    if isinstance(step, MakeDir):
        return {"mkdir": str(step.path), "mode": f"{step.mode:04o}"}
    if isinstance(step, RemoveFile):
        return {"remove": str(step.path)}
    return {"run": list(step.argv), "allowFailure": step.allow_failure}


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


# ----------------------------------------------------------------------------- acting


def execute(plan: Plan) -> None:
    """Carry out a plan's steps in order; stop at the first failing step."""
    for step in plan.steps:
        if isinstance(step, FileWrite):
            write_file_atomically(step)
        elif isinstance(step, MakeDir):
            step.path.mkdir(mode=step.mode, parents=True, exist_ok=True)
        elif isinstance(step, RemoveFile):
            with contextlib.suppress(FileNotFoundError):
                step.path.unlink()
        else:
            run_step(step)


def run_step(command: Command) -> None:
    result = run_command(command.argv)
    if result.returncode != 0 and not command.allow_failure:
        output = (result.stderr or result.stdout).strip().splitlines()
        reason = output[-1] if output else f"exit status {result.returncode}"
        raise ServiceError(f"`{shlex.join(command.argv)}` failed: {reason}")


def run_command(
    argv: Sequence[str], timeout: float = COMMAND_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """Run a service-manager command, capturing output; a missing tool is a ServiceError."""
    try:
        return subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise ServiceError(f"`{argv[0]}` was not found on PATH") from None
    except subprocess.TimeoutExpired:
        raise ServiceError(f"`{shlex.join(argv)}` did not answer within {timeout:.0f} s") from None


def run_passthrough(argv: Sequence[str]) -> int:
    """Run a command with the terminal attached (for logs, possibly following)."""
    try:
        return subprocess.call(list(argv), stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise ServiceError(f"`{argv[0]}` was not found on PATH") from None


def write_file_atomically(write: FileWrite) -> None:
    write.path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{write.path.name}.", dir=write.path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(write.content.encode(write.encoding))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp_name, write.mode)
        os.replace(tmp_name, write.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


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
