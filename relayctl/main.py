"""`relayctl`: the command table, global flags, and errors → exit codes.

Each module named in COMMAND_MODULES exposes ``register(subparsers, common)``: it adds its
commands, with ``common`` (the global flags, accepted after the command too) as a parent, and
sets ``func(args) -> int`` on them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

from relayctl.cli import CliError, ExitCode, confirm, emit
from relayctl.terminal import escape
from relayd import __version__

# CliError, ExitCode, emit and confirm live in relayctl/cli.py; named here for old importers
# (tests, scripts). Modules of relayctl import relayctl.cli (tests/unit/test_architecture.py).
__all__ = ["COMMAND_MODULES", "CliError", "ExitCode", "build_parser", "confirm", "emit", "main"]

COMMAND_MODULES: tuple[str, ...] = (
    "setup",
    "token",
    "status",
    "daemon",
    "logs",
    "backup",
    "migrate_db",
    "upgrade",
    "provider",
    "messaging",
    "codex",
    "whoami",
    "claude",
    "mcp",
)


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
