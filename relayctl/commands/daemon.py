"""`relayctl daemon …`: run relayd as a user service (systemd, launchd, Windows Task Scheduler).

Every action is planned first; install and uninstall show the plan and act only with --yes or
after a yes on a terminal, never waiting for input that cannot come.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path

from relayctl.argtypes import positive_int
from relayctl.cli import CliError, ExitCode, confirm, emit
from relayctl.service import detect
from relayctl.service.manager import ACTIONS, InstallOptions, default_program
from relayctl.service.plan import Plan, ServiceError, execute
from relayctl.terminal import escape

ACTION_HELP = {
    "start": "start the service now",
    "stop": "stop the service",
    "restart": "restart the service (picks up a new relayd after an upgrade)",
    "enable": "start the service automatically at login/boot",
    "disable": "do not start the service automatically",
}
CommandFunc = Callable[[argparse.Namespace], int]

PAST_TENSE = {
    "start": "started",
    "stop": "stopped",
    "restart": "restarted",
    "enable": "enabled",
    "disable": "disabled",
}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    daemon = subparsers.add_parser(
        "daemon",
        help="install and control relayd as a user service",
        description="Install relayd as a user service (systemd user unit, launchd agent, "
        "Windows logon task) and control it. Set AGENT_RELAY_SERVICE_BACKEND to force one.",
    )
    actions = daemon.add_subparsers(dest="daemon_action", metavar="ACTION")
    actions.required = True

    install = actions.add_parser(
        "install", parents=[common], help="write the service definition (plan first)",
        description="Write the service definition for this platform and register it. "
        "Shows the plan first; acts only with --yes or after confirming on a terminal.",
    )
    install.add_argument("--binary", help="relayd executable (default: the one of this install)")
    install.add_argument("--enable", action="store_true", help="also start it at login/boot")
    install.add_argument("--start", action="store_true", help="also start it now")
    _add_plan_flags(install)
    install.set_defaults(func=cmd_install)

    uninstall = actions.add_parser(
        "uninstall", parents=[common], help="stop and remove the service definition"
    )
    _add_plan_flags(uninstall)
    uninstall.set_defaults(func=cmd_uninstall)

    for action in ACTIONS:
        parser = actions.add_parser(action, parents=[common], help=ACTION_HELP[action])
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.set_defaults(func=cmd_action, action=action)

    status = actions.add_parser(
        "status", parents=[common], help="the service manager's view (exit 3 when not running)"
    )
    status.set_defaults(func=cmd_status)

    logs = actions.add_parser("logs", parents=[common], help="the service's log lines")
    logs.add_argument("-n", "--lines", type=positive_int, default=100, help="how many (100)")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.set_defaults(func=cmd_logs)


def _add_plan_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--yes", "-y", action="store_true", help="act without asking")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


# ----------------------------------------------------------------------------- shared


def service_errors(command: CommandFunc) -> CommandFunc:
    """A service-manager failure (ServiceError) becomes a one-line CliError (exit 1)."""

    @functools.wraps(command)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ServiceError as exc:
            raise CliError(str(exc)) from None

    return wrapper


def show_and_apply(args: argparse.Namespace, plan: Plan, what: str, ask: bool) -> bool:
    """Show the plan (always when ``ask``); unless --dry-run, confirm if ``ask`` and act."""
    if plan.blocker and not args.dry_run:
        raise CliError(plan.blocker)  # before anything is written or run
    if args.json and args.dry_run:
        emit(args, plan.to_json(), "")
    elif not args.json and (ask or args.dry_run):
        print(escape(plan.render(with_contents=args.dry_run)), flush=True)
    if args.dry_run:
        if plan.blocker:
            print(escape(f"relayctl: warning: {plan.blocker}"), file=sys.stderr, flush=True)
        return False
    if ask:
        confirm(args, what)
    execute(plan)
    return True


def service_args(args: argparse.Namespace) -> tuple[str, ...]:
    """Flags that make the service's relayd use the same config and socket as this relayctl."""
    extra: list[str] = []
    config = args.config or os.environ.get("AGENT_RELAY_CONFIG")
    if config:
        extra += ["--config", str(Path(config).expanduser().absolute())]
    if args.socket:
        extra += ["--socket", str(Path(args.socket).expanduser().absolute())]
    return tuple(extra)


# ----------------------------------------------------------------------------- commands


@service_errors
def cmd_install(args: argparse.Namespace) -> int:
    backend = detect()
    program = default_program(args.binary) + service_args(args)
    plan = backend.plan_install(InstallOptions(program=program, enable=args.enable,
                                               start=args.start))
    if show_and_apply(args, plan, "carry out this plan", ask=True):
        emit(
            args,
            {"installed": True, "backend": backend.name, "unitPath": str(backend.unit_path())},
            f"Installed {backend.unit_path()}.",
        )
    return ExitCode.OK


@service_errors
def cmd_uninstall(args: argparse.Namespace) -> int:
    backend = detect()
    plan = backend.plan_uninstall()
    if show_and_apply(args, plan, "carry out this plan", ask=True):
        emit(args, {"installed": False, "backend": backend.name}, "Uninstalled.")
    return ExitCode.OK


@service_errors
def cmd_action(args: argparse.Namespace) -> int:
    backend = detect()
    plan = backend.plan_action(args.action)
    if show_and_apply(args, plan, args.action, ask=False):
        emit(
            args,
            {"action": args.action, "backend": backend.name, "ok": True},
            f"agent-relay {PAST_TENSE[args.action]} ({backend.name}).",
        )
    return ExitCode.OK


@service_errors
def cmd_status(args: argparse.Namespace) -> int:
    backend = detect()
    status = backend.status()
    human = status.summary() + (f"\n  {status.detail}" if status.detail else "")
    emit(args, status.to_json(), human)
    return ExitCode.OK if status.running else ExitCode.NOT_RUNNING


@service_errors
def cmd_logs(args: argparse.Namespace) -> int:
    backend = detect()
    return backend.logs(args.lines, args.follow)
