"""`relayctl`: the command table, global flags, and errors → exit codes.

Each module named in COMMAND_MODULES exposes ``register(subparsers, common)``: it adds its
commands, with ``common`` (the global flags, accepted after the command too) as a parent, and
sets ``func(args) -> int`` on them.
"""

from __future__ import annotations

import argparse
import enum
import importlib
import json
import sys
from collections.abc import Sequence
from typing import Any

from relayctl.terminal import escape
from relayd import __version__

COMMAND_MODULES: tuple[str, ...] = (
    "setup",
    "token",
    "status",
    "daemon",
    "logs",
    "backup",
    "upgrade",
    "provider",
    "messaging",
    "codex",
    "whoami",
    "claude",
    "mcp",
)


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


def _add_global_flags(parser: argparse.ArgumentParser, default: Any) -> None:
    json_default = False if default is None else default
    parser.add_argument("--json", action="store_true", default=json_default,
                        help="print data as JSON")
    parser.add_argument("--config", default=default,
                        help="config file (default: the platform config dir)")
    parser.add_argument("--socket", default=default,
                        help="control socket path (default: from config)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relayctl", description="Set up, run and use an Agent Relay."
    )
    parser.add_argument("--version", action="version", version=f"relayctl {__version__}")
    _add_global_flags(parser, default=None)
    # The same flags after the command; SUPPRESS so an absent one keeps what came before it.
    common = argparse.ArgumentParser(add_help=False)
    _add_global_flags(common, default=argparse.SUPPRESS)
    parser.set_defaults(common_parent=common)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(f"relayctl.commands.{name}").register(subparsers, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else list(argv)
    if len(args_list) == 2 and args_list[0] == "claude" and args_list[1] == "hook":
        pass  # no EVENT: let argparse say so
    elif len(args_list) == 3 and args_list[:2] == ["claude", "hook"] \
            and args_list[2] not in ("-h", "--help"):
        # Claude Code runs this on every tool call: skip building the whole command table.
        from relayctl.providers import claude_hook

        return claude_hook.run(args_list[2])
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) and ExitCode.USAGE
    try:
        return int(args.func(args))
    except CliError as exc:
        print(f"relayctl: {escape(exc.message)}", file=sys.stderr)  # may quote the server
        return exc.code
    except KeyboardInterrupt:
        return ExitCode.FAILURE


if __name__ == "__main__":
    # `python -m relayctl.main` runs this file as __main__, a second copy of the module: run
    # the importable one, so the CliError the commands raise is the class caught in main().
    from relayctl.main import main as importable_main

    sys.exit(importable_main())
