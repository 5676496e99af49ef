"""`relayctl logs [-n N] [-f]`: relayd's recent log lines, from the socket or its log file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from relayctl.cli import CliError, ExitCode, emit
from relayctl.clients.control import ControlClient, load_settings
from relayctl.service.manager import follow_file, tail_lines
from relayctl.terminal import escape
from relayd.config import paths


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "logs", parents=[common], help="show relayd's recent log lines",
        description="Recent log lines from the running relayd (its in-memory ring), or from "
        "its log file when it is down. With -f, keep printing new lines.",
    )
    parser.add_argument("-n", "--lines", type=int, default=100, help="how many lines (100)")
    parser.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.lines <= 10_000:
        raise CliError("-n must be between 0 and 10000", ExitCode.USAGE)
    client = ControlClient.from_args(args)
    try:
        if args.follow:
            _print_stream(client, args.lines)
        else:
            lines = client.get(f"/v1/logs?n={args.lines}")["lines"]
            emit(args, {"lines": lines, "source": "relayd"}, "\n".join(lines))
        return ExitCode.OK
    except CliError as exc:
        if exc.code != ExitCode.NOT_RUNNING:
            raise
        return _from_file(args, exc.message)


def _print_stream(client: ControlClient, n: int) -> None:
    for line in client.stream_lines(f"/v1/logs?n={n}&follow=1"):
        print(escape(line, keep_newlines=False), flush=True)


def _from_file(args: argparse.Namespace, why: str) -> int:
    log_file = _log_file(args)
    if log_file is None:
        raise CliError(f"{why}. Its earlier logs are {_where_logs_are()}", ExitCode.NOT_RUNNING)
    print(escape(f"relayctl: relayd is not running; showing {log_file}"), file=sys.stderr)
    lines = tail_lines(log_file, args.lines)
    emit(args, {"lines": lines, "source": str(log_file)}, "\n".join(lines))
    if args.follow:
        for line in follow_file(log_file):
            print(escape(line, keep_newlines=False), flush=True)
    return ExitCode.OK


def _log_file(args: argparse.Namespace) -> Path | None:
    configured = load_settings(args).log_file
    for candidate in (configured, paths.default_log_file()):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _where_logs_are() -> str:
    if sys.platform.startswith("linux"):
        return "in the journal if it ran as a service: journalctl --user -u agent-relay"
    if sys.platform == "darwin":
        return f"in the launchd log files under {paths.log_dir()}"
    return f"under {paths.log_dir()} if it ran as a service"
