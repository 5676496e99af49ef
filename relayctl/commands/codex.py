"""`relayctl codex [--headless] [CODEX ARGS…]`: run Codex connected to the relay.

Every argument after the launcher's own flags goes to `codex` unchanged (Codex has its own
``-c/--config``, ``--model`` … flags), so this command parses its arguments itself.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from relayctl.cli import CliError, ExitCode

OWN_FLAGS = ("--headless", "--thread", "--hook")


class PassThroughParser(argparse.ArgumentParser):
    """Takes the launcher's flags from the front; the rest, verbatim, is Codex's."""

    def parse_known_args(  # type: ignore[override]
            self, args: Sequence[str] | None = None,
            namespace: argparse.Namespace | None = None) -> tuple[argparse.Namespace, list[str]]:
        ns = namespace or argparse.Namespace()
        ns.headless, ns.thread, ns.hook = False, None, None
        for key, value in self._defaults.items():
            setattr(ns, key, value)
        rest = list(sys.argv[1:] if args is None else args)
        while rest:
            arg = rest[0]
            if arg in ("-h", "--help"):
                self.print_help()
                self.exit(0)
            if arg == "--headless":
                ns.headless = True
                rest.pop(0)
            elif arg.split("=", 1)[0] in ("--thread", "--hook"):
                name, eq, value = arg.partition("=")
                rest.pop(0)
                if not eq:
                    if not rest:
                        self.error(f"{name} needs a value")
                    value = rest.pop(0)
                setattr(ns, name.lstrip("-"), value)
            elif arg == "--":
                rest.pop(0)
                break
            else:
                break
        ns.codex_args = rest
        return ns, []


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "codex",
        help="run Codex connected to the relay (app-server + sidecar)",
        description="Start `codex app-server` on a free loopback port, the relay sidecar, "
        "and `codex --remote` with CODEX ARGS in the foreground. With --headless, only the "
        "app-server and the sidecar, printing `app-server:`, `thread:`, `agent:` and "
        "`attach:` lines. Arguments after the launcher's own flags go to codex unchanged.",
        usage="relayctl codex [--headless [--thread ID]] [CODEX ARGS…]",
    )
    parser.__class__ = PassThroughParser
    parser.add_argument("--headless", action="store_true",
                        help="app-server and sidecar only; attach with the printed command")
    parser.add_argument("--thread", metavar="ID", help="resume this Codex thread")
    parser.add_argument("--hook", metavar="EVENT",
                        help="run as the Codex hook EVENT (SessionStart), reading its JSON")
    parser.set_defaults(func=cmd_codex)


def cmd_codex(args: argparse.Namespace) -> int:
    if args.hook:
        from relayctl.providers.codex.hook import run_hook

        return run_hook(args.hook)
    from relayctl.providers.codex.launcher import Launcher

    if args.headless and args.codex_args:
        raise CliError("--headless runs no Codex UI, so it takes no CODEX ARGS: "
                       + " ".join(args.codex_args), ExitCode.USAGE)
    launcher = Launcher(args.codex_args, headless=args.headless, thread=args.thread)
    code: Any = launcher.run()
    return int(code)
