"""Plans: what a service action would do (files to write or remove, directories, commands,
notes for the person), shown before anything is touched, and ``execute``, which carries one
out step by step."""

from __future__ import annotations

import contextlib
import os
import shlex
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

COMMAND_TIMEOUT = 30.0


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
