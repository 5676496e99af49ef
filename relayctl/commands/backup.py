"""`relayctl backup PATH`: an online backup of the running relay's database."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from relayctl.cli import ExitCode, emit
from relayctl.clients.control import ControlClient

BACKUP_TIMEOUT = 300.0  # a large database takes a while; the relay keeps serving meanwhile


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "backup", parents=[common], help="copy the live database to a file (online)",
        description="Ask the running relayd for an online backup of its database (SQLite's "
        "backup API: consistent, and the relay keeps serving). The file is written by relayd, "
        "so PATH must be writable by the user relayd runs as.",
    )
    parser.add_argument("path", help="the backup file to write (relative paths are made absolute)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    client.timeout = max(client.timeout, BACKUP_TIMEOUT)
    target = Path(args.path).expanduser().absolute()
    answer = client.post("/v1/backup", {"path": str(target)})
    emit(args, answer, f"backup written to {answer['path']} ({answer['sizeBytes']} bytes)")
    return ExitCode.OK
