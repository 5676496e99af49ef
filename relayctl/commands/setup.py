"""`relayctl setup`: write the config file with a token, a loopback bind and a durable database.

Idempotent: an existing token and settings are kept; a rerun changes only what flags say.
Without --yes it asks on a terminal; without a terminal it only previews (exit 1), so a script
never hangs on a prompt.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

from relayctl import trust
from relayctl.cli import CliError, ExitCode, emit
from relayd.config import file as configfile
from relayd.config import paths
from relayd.config import settings as settings_mod
from relayd.config.settings import SettingsError

NEXT_STEP = (
    "next: run it as a service with `relayctl daemon install --start`, "
    "or in the foreground with `relayd`; then check it with `relayctl status`"
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "setup",
        parents=[common],
        help="write the config file (token, loopback bind, database path)",
        description="Write the relay's TOML config: a generated admin token, a loopback bind "
        "and a durable database path. Rerunning keeps the token and changes only what the "
        "flags say. Without --yes and without a terminal it only shows what it would write.",
    )
    parser.add_argument("--yes", "-y", action="store_true", help="write without asking")
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (default 4850)")
    parser.add_argument("--db", help="SQLite database file (default: the user data dir)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = settings_mod.config_file_from(args.config, os.environ)
    try:
        current = configfile.read(path)
    except SettingsError as exc:
        raise CliError(f"{exc}; fix it or move it away, then rerun `relayctl setup`") from None
    wanted, generated = planned_config(current, args)
    _validate(wanted, path)
    changed = wanted != current
    public = {k: v for k, v in wanted.items() if k != "token"}
    if not changed:
        trust.warn_if_token_exposed(path)  # a rewrite would have made it 0600
        emit(args, _report(path, public, False, generated), f"{path} is already set up "
             f"({_describe(public)}); nothing changed\n{NEXT_STEP}")
        return ExitCode.OK
    if not args.yes and not _confirm(path, public, generated):
        return ExitCode.FAILURE
    _prepare_data_dir(Path(str(wanted["db_path"])))
    try:
        configfile.write_atomic(path, wanted)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    token_note = "a new token was generated" if generated else "the existing token was kept"
    emit(args, _report(path, public, True, generated),
         f"wrote {path} ({_describe(public)}; {token_note}; "
         f"see it with `relayctl token show`)\n{NEXT_STEP}")
    return ExitCode.OK


def planned_config(
    current: dict[str, Any], args: argparse.Namespace
) -> tuple[dict[str, Any], bool]:
    wanted = dict(current)
    generated = not current.get("token")
    if generated:
        wanted["token"] = secrets.token_urlsafe(32)
    wanted["host"] = args.host or current.get("host") or "127.0.0.1"
    wanted["port"] = args.port if args.port is not None else current.get("port", 4850)
    if args.db:
        wanted["db_path"] = str(Path(args.db).expanduser().absolute())
    else:
        wanted["db_path"] = current.get("db_path") or str(paths.default_db_path())
    return wanted, generated


def _validate(wanted: dict[str, Any], path: Path) -> None:
    try:
        settings = settings_mod.Settings(
            **{key: settings_mod._parse(key, value, str(path)) for key, value in wanted.items()}
        )
        settings_mod.check_bind_safety(settings)
    except SettingsError as exc:
        raise CliError(str(exc), ExitCode.USAGE) from None


def _confirm(path: Path, public: dict[str, Any], generated: bool) -> bool:
    preview = f"would write {path}: {_describe(public)}" + (" and a new token" if generated else "")
    if not sys.stdin.isatty():
        print(f"{preview}\nnot written: no terminal to confirm on; rerun with --yes",
              file=sys.stderr)
        return False
    answer = input(f"{preview}\nwrite it? [Y/n] ").strip().lower()
    if answer not in ("", "y", "yes"):
        print("not written", file=sys.stderr)
        return False
    return True


def _prepare_data_dir(db_path: Path) -> None:
    try:
        db_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise CliError(
            f"cannot create the data directory {db_path.parent}: {exc.strerror}; choose "
            "another database path with --db"
        ) from None
    if not os.access(db_path.parent, os.W_OK):
        raise CliError(f"the data directory {db_path.parent} is not writable; choose another"
                       " database path with --db")


def _describe(public: dict[str, Any]) -> str:
    return ", ".join(f"{key}={public[key]}" for key in ("host", "port", "db_path") if key in public)


def _report(path: Path, public: dict[str, Any], written: bool, generated: bool) -> dict[str, Any]:
    return {
        "configPath": str(path),
        "written": written,
        "tokenGenerated": generated and written,
        "settings": public,
    }
