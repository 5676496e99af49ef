"""`relayctl token show|rotate`: the admin token in the config file, rotated live if relayd runs."""

from __future__ import annotations

import argparse
import os
import secrets
from typing import Any

from relayctl import trust
from relayctl.cli import CliError, ExitCode, emit
from relayctl.clients.control import ControlClient
from relayd.config import file as configfile
from relayd.config import settings as settings_mod
from relayd.config.settings import SettingsError

ROTATED_NOTE = "agents and scripts that use the old token must be given the new one"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "token", parents=[common], help="show or rotate the admin token",
        description="Show the admin token from the config file, or rotate it (through the "
        "running relayd when it is up, so the new token applies at once; else in the file).",
    )
    actions = parser.add_subparsers(dest="token_action", metavar="ACTION")
    actions.required = True
    show = actions.add_parser("show", parents=[common], help="print the admin token")
    show.set_defaults(func=show_token)
    rotate = actions.add_parser("rotate", parents=[common], help="generate a new admin token")
    rotate.set_defaults(func=rotate_token)


def show_token(args: argparse.Namespace) -> int:
    path = settings_mod.config_file_from(args.config, os.environ)
    token = _read(path).get("token")
    if not token:
        raise CliError(f"no token in {path}; create one with `relayctl setup`")
    emit(args, {"token": token, "configPath": str(path)}, str(token))
    return ExitCode.OK


def rotate_token(args: argparse.Namespace) -> int:
    client = ControlClient.from_args(args)
    try:
        answer = client.post("/v1/token/rotate")
    except CliError as exc:
        if exc.code != ExitCode.NOT_RUNNING:
            raise
        token, live = _rotate_in_file(args), False
        where = "relayd is not running; it will use the new token when it starts"
    else:
        token, live = str(answer["token"]), True
        where = f"relayd uses it from now on; saved in {answer['configPath']}"
    emit(args, {"token": token, "live": live}, f"{token}\n{where}; {ROTATED_NOTE}")
    return ExitCode.OK


def _rotate_in_file(args: argparse.Namespace) -> str:
    path = settings_mod.config_file_from(args.config, os.environ)
    token = secrets.token_urlsafe(32)
    try:
        _read(path)
        configfile.update(path, token=token)
    except OSError as exc:
        raise CliError(f"cannot write {path}: {exc.strerror}") from None
    return token


def _read(path: Any) -> dict[str, Any]:
    try:
        data = configfile.read(path)
    except SettingsError as exc:
        raise CliError(f"{exc}; fix it or rerun `relayctl setup`") from None
    trust.warn_if_token_exposed(path)
    return data
