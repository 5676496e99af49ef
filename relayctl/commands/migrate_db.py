"""`relayctl migrate-db --to postgresql://…`: copy a SQLite relay into PostgreSQL.

Stop relayd first (writes made after the copy's snapshot would stay behind in SQLite), copy,
then start relayd (one or more replicas) with DB_URL. The copy refuses a target that already
holds data and verifies every table's row count before it commits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from relayctl.cli import CliError, ExitCode, emit
from relayctl.clients.control import load_settings
from relayd.config.settings import DB_URL_SCHEMES


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "migrate-db", parents=[common], help="copy the SQLite database into PostgreSQL",
        description="Copy this relay's SQLite database (the configured db_path, or --from) "
        "into an empty PostgreSQL database, verifying row counts; then run relayd with "
        "DB_URL set to the same URL. Stop relayd before copying.",
    )
    parser.add_argument("--to", required=True, metavar="URL",
                        help="postgresql://user:password@host:5432/database")
    parser.add_argument("--from", dest="source", metavar="PATH",
                        help="the SQLite database file (default: the configured db_path)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.to.startswith(DB_URL_SCHEMES):
        raise CliError("--to must be a postgresql:// (or postgres://) URL", ExitCode.USAGE)
    source = Path(args.source).expanduser() if args.source else load_settings(args).db_path
    answer = _copy(source, args.to)
    if "error" in answer:
        raise CliError(f"migrate-db: {answer['error']}")
    lines = [f"copied {source} into {answer['target']}; row counts match:"]
    lines += [f"  {table:<20} {n['postgresql']}" for table, n in sorted(answer["tables"].items())]
    lines.append("now start relayd with DB_URL set to that URL (docs/scaling.md)")
    emit(args, answer, "\n".join(lines))
    return ExitCode.OK


def _copy(source: Path, url: str) -> dict[str, Any]:
    """relayd's copy tool in a child process (relayctl does not load the storage layer); the
    URL goes in its environment, not its command line, so `ps` never shows a password."""
    done = subprocess.run(
        [sys.executable, "-c", COPY_SCRIPT, str(source)],
        env={**os.environ, "AGENT_RELAY_COPY_TO": url},
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False,
    )
    try:
        answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        detail = done.stderr.strip().splitlines()[-1:] or [f"exit code {done.returncode}"]
        raise CliError(f"migrate-db: the copy failed: {detail[0]}") from None
    return answer


COPY_SCRIPT = (
    "import os, sys; from relayd.storage.copy_to_postgres import main;"
    " sys.exit(main([sys.argv[1], os.environ['AGENT_RELAY_COPY_TO']]))"
)
