"""What every relayctl command shares: exit codes, the one-line error, output and confirmation.

Commands and clients import these from here, never from relayctl.main (the entry point that
imports the commands).
"""

from __future__ import annotations

import argparse
import enum
import json
import sys
from typing import Any

from relayctl.terminal import escape


class ExitCode(enum.IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    NOT_RUNNING = 3


class CliError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = ExitCode.FAILURE) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def emit(args: argparse.Namespace, data: Any, human: str) -> None:
    """Print data as JSON with --json, else the human text."""
    if getattr(args, "json", False):
        print(json.dumps(data, indent=2, sort_keys=True, default=str))
    elif human:
        print(escape(human))


def confirm(args: argparse.Namespace, what: str) -> None:
    """Go ahead with --yes or a yes on a terminal; without a terminal, never wait."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise CliError(f"not confirmed: pass --yes to {what} (there is no terminal to ask on)")
    answer = input(f"{what.capitalize()}? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CliError("cancelled, nothing changed")
