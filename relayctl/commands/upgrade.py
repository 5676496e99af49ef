"""`relayctl upgrade`: upgrade agent-relay the way it was installed, then restart and verify.

Steps: find how this copy was installed (pipx, uv tool, a virtual environment), run that tool's
upgrade, refresh the providers, restart the service through its manager, and wait until the
daemon reports the new version.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from relayctl.cli import CliError, ExitCode, confirm, emit
from relayctl.terminal import escape
from relayd import __version__

DISTRIBUTION = "agent-relay"
FIND_LINKS_ENV = "AGENT_RELAY_UPGRADE_FIND_LINKS"
UPGRADE_TIMEOUT = 600.0
VERSION_WAIT_SECONDS = 30.0
MANUAL_INSTRUCTIONS = (
    "upgrade it with the tool you installed it with, e.g. `pipx upgrade agent-relay`, "
    "`uv tool upgrade agent-relay` or `python -m pip install --upgrade agent-relay` in its "
    "virtual environment, then run `relayctl daemon restart`"
)


@dataclass(frozen=True)
class InstallMethod:
    kind: str  # pipx | uv-tool | venv | checkout | vcs | editable | unknown
    location: Path
    command: tuple[str, ...] | None  # None: relayctl cannot upgrade this install itself
    reason: str = ""
    note: str = ""  # what the command will do, in plain words, when it is not obvious


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
             common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "upgrade",
        parents=[common],
        help="upgrade agent-relay, refresh providers, restart the daemon",
        description="Upgrade agent-relay with the tool it was installed with (pipx, uv tool, "
        "pip in its virtual environment), refresh the providers, restart the service and "
        "wait until the daemon reports the new version.",
    )
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
    parser.add_argument("--yes", "-y", action="store_true", help="act without asking")
    parser.add_argument(
        "--providers", action="append", metavar="NAME[,NAME]",
        help="providers to refresh afterwards (default: all known)",
    )
    parser.add_argument(
        "--no-restart", action="store_true", help="do not restart the daemon afterwards"
    )
    parser.add_argument(
        "--find-links", metavar="DIR",
        default=os.environ.get(FIND_LINKS_ENV) or None,
        help=f"also look for wheels in this folder (env {FIND_LINKS_ENV})",
    )
    parser.add_argument("--index-url", metavar="URL", help="package index to upgrade from")
    parser.add_argument(
        "--no-index", action="store_true", help="do not use a package index (with --find-links)"
    )
    parser.add_argument(
        "--wait", type=_seconds, default=VERSION_WAIT_SECONDS, metavar="SECONDS",
        help=f"how long to wait for the restarted daemon ({VERSION_WAIT_SECONDS:.0f})",
    )
    parser.set_defaults(func=cmd_upgrade)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value <= 600:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 600")
    return value


# ----------------------------------------------------------------------------- detection


def index_options(args: argparse.Namespace) -> list[str]:
    options: list[str] = []
    if args.find_links:
        options += ["--find-links", str(Path(args.find_links).expanduser().absolute())]
    if args.index_url:
        options += ["--index-url", args.index_url]
    if args.no_index:
        options.append("--no-index")
    return options


def source_checkout() -> Path | None:
    """The source folder when this code runs from a checkout (an editable or development
    install), which an upgrade from an index must not replace."""
    import relayd

    package_dir = Path(relayd.__file__).resolve().parent
    if package_dir.is_relative_to(Path(sys.prefix).resolve()):
        return None
    return package_dir.parent


def detect_install(args: argparse.Namespace) -> InstallMethod:
    prefix = Path(sys.prefix)
    options = index_options(args)
    source = source_checkout()
    if source is not None:
        return InstallMethod(
            "editable", source, None,
            f"agent-relay is installed from a source checkout ({source}): update it with "
            "`git pull`, then `relayctl daemon restart`",
        )
    if (prefix / "pipx_metadata.json").exists() or "pipx" in prefix.parts:
        return _tool_method("pipx", prefix, "pipx", ["upgrade", DISTRIBUTION],
                            ["--pip-args", shlex.join(options)] if options else [])
    if (prefix / "uv-receipt.toml").exists():
        return _tool_method("uv-tool", prefix, "uv", ["tool", "upgrade", DISTRIBUTION], options)
    if sys.prefix != sys.base_prefix:
        python = str(Path(sys.executable).absolute())
        origin = install_origin()
        if origin is not None and not options:  # --find-links / --index-url say where instead
            return _from_origin(prefix, python, origin)
        command = (python, "-m", "pip", "install", "--upgrade", DISTRIBUTION, *options)
        return InstallMethod("venv", prefix, command)
    return InstallMethod(
        "unknown", prefix, None,
        "agent-relay is not in a virtual environment, pipx or uv tool: " + MANUAL_INSTRUCTIONS,
    )


def install_origin() -> dict[str, Any] | None:
    """Where pip installed agent-relay from, when not from an index: PEP 610's
    direct_url.json ({url, dir_info | vcs_info | archive_info}), else None."""
    from importlib import metadata

    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
        data = json.loads(text) if text else None
    except (metadata.PackageNotFoundError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("url"), str) else None


def _from_origin(prefix: Path, python: str, origin: dict[str, Any]) -> InstallMethod:
    """Upgrade from where it came from: the same checkout folder or repository, never an
    index package of the same name that may not exist (or may be someone else's)."""
    url = str(origin["url"])
    pip = (python, "-m", "pip", "install", "--upgrade")
    if isinstance(origin.get("vcs_info"), dict):
        vcs = str(origin["vcs_info"].get("vcs") or "git")
        source = f"{vcs}+{url}"
        return InstallMethod(
            "vcs", prefix, (*pip, source),
            note=f"reinstall agent-relay from {source} (its newest commit on the default "
            "branch)",
        )
    path = Path(url2pathname(urlsplit(url).path)) if url.startswith("file:") else None
    if path is not None and isinstance(origin.get("dir_info"), dict):
        if not path.is_dir():
            return InstallMethod(
                "checkout", prefix, None,
                f"agent-relay was installed from the folder {path}, which is gone: "
                + MANUAL_INSTRUCTIONS,
            )
        return InstallMethod(
            "checkout", prefix, (*pip, str(path)),
            note=f"reinstall agent-relay from the checkout {path} as it is now; to get a "
            f"newer version, update it first (`git -C {shlex.quote(str(path))} pull`)",
        )
    return InstallMethod(
        "unknown", prefix, None,
        f"agent-relay was installed from {url}: install the newer file the same way, or give "
        "--find-links DIR / --index-url URL to upgrade from there",
    )


def _tool_method(
    kind: str, prefix: Path, tool: str, args: list[str], extra: list[str]
) -> InstallMethod:
    found = shutil.which(tool)
    if found is None:
        return InstallMethod(
            kind, prefix, None, f"installed with {tool}, but `{tool}` is not on PATH: "
            + MANUAL_INSTRUCTIONS,
        )
    return InstallMethod(kind, prefix, (found, *args, *extra))


# ----------------------------------------------------------------------------- steps


def installed_version() -> str:
    """The version now on disk, asked of a fresh interpreter (this one has the old code)."""
    result = subprocess.run(
        [sys.executable, "-c",
         f"import importlib.metadata as m; print(m.version({DISTRIBUTION!r}))"],
        capture_output=True, text=True, timeout=60, check=False,
    )
    if result.returncode != 0:
        raise CliError("cannot tell the installed version after the upgrade: "
                       + (result.stderr.strip().splitlines() or ["no output"])[-1])
    return result.stdout.strip()


def run_upgrade(command: tuple[str, ...]) -> None:
    try:
        result = subprocess.run(
            list(command), capture_output=True, text=True, timeout=UPGRADE_TIMEOUT,
            stdin=subprocess.DEVNULL, check=False,
        )
    except FileNotFoundError:
        raise CliError(f"`{command[0]}` was not found") from None
    except subprocess.TimeoutExpired:
        raise CliError(f"the upgrade did not finish within {UPGRADE_TIMEOUT:.0f} s") from None
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise CliError(f"the upgrade failed (`{shlex.join(command)}`):\n{tail}")


def refresh_providers(providers: list[str] | None) -> dict[str, Any]:
    """Run the new relayctl's `provider refresh` (this process still has the old code)."""
    argv = [sys.executable, "-m", "relayctl.main", "provider", "refresh", "--json"]
    for item in providers or []:
        argv += ["--providers", item]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        return {"ok": False, "error": result.stderr.strip() or f"exit {result.returncode}"}
    try:
        return {"ok": True, **json.loads(result.stdout)}
    except ValueError:
        return {"ok": False, "error": "provider refresh printed something that is not JSON"}


def daemon_version(config: str | None) -> str | None:
    """The version the local daemon reports on /api/health, or None when it does not answer."""
    from relayctl.clients.api import ApiClient, find_relay

    local_env = {k: v for k, v in os.environ.items() if k != "AGENT_RELAY_URL"}
    try:
        health = ApiClient(find_relay(config, env=local_env), timeout=2.0).get("/health")
    except CliError:
        return None
    return str(health.get("version")) if isinstance(health, dict) else None


def wait_for_version(config: str | None, wanted: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        seen = daemon_version(config)
        if seen == wanted:
            return seen
        time.sleep(0.5)
    return seen


def restart_service(args: argparse.Namespace, new: str) -> dict[str, Any]:
    from relayctl.service import detect
    from relayctl.service.plan import ServiceError, execute

    try:
        manager = detect()
        if not manager.is_installed():
            return {"restarted": False, "reason": "no service installed; restart relayd "
                    "yourself to run the new version"}
        execute(manager.plan_action("restart"))
    except ServiceError as exc:
        return {"restarted": False, "reason": str(exc)}
    seen = wait_for_version(args.config, new, args.wait)
    result: dict[str, Any] = {"restarted": True, "backend": manager.name, "daemonVersion": seen}
    if seen != new:
        result["reason"] = (
            f"the daemon did not report {new} within {args.wait:.0f} s (it reports {seen}); "
            "check `relayctl daemon status` and `relayctl daemon logs`"
        )
    return result


# ----------------------------------------------------------------------------- command


def plan_text(method: InstallMethod, args: argparse.Namespace) -> str:
    assert method.command is not None
    restart = (
        "skip the restart (--no-restart)" if args.no_restart
        else f"restart the service and wait up to {args.wait:.0f} s for the new version"
    )
    lines = [
        f"Plan: upgrade agent-relay {__version__} ({method.kind} at {method.location})",
        f"  1. run    {shlex.join(method.command)}",
        "  2. run    relayctl provider refresh",
        f"  3. {restart}",
    ]
    if method.note:
        lines.insert(1, f"  This will {method.note}.")
    return "\n".join(lines)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from relayctl.commands.provider import select

    select(args.providers)  # an unknown provider is a usage error before anything changes
    method = detect_install(args)
    if method.command is None and args.dry_run:  # the plan is a manual step: shown, not failed
        emit(args, {"method": method.kind, "command": None, "from": __version__,
                    "manual": method.reason}, f"Plan: nothing to run here; {method.reason}")
        return ExitCode.OK
    if method.command is None:
        raise CliError(method.reason)
    if not args.json or not args.dry_run:
        print(escape(plan_text(method, args)), file=sys.stderr if args.json else sys.stdout,
              flush=True)
    if args.dry_run:
        emit(args, {"method": method.kind, "command": list(method.command),
                    "from": __version__, "note": method.note or None}, "")
        return ExitCode.OK
    confirm(args, "upgrade")
    run_upgrade(method.command)
    new = installed_version()
    report: dict[str, Any] = {"method": method.kind, "from": __version__, "to": new,
                              "providers": refresh_providers(args.providers)}
    if args.no_restart:
        report["restart"] = {
            "restarted": False,
            "reason": "not restarted (--no-restart): a running daemon keeps its version until "
            "`relayctl daemon restart`",
        }
    else:
        report["restart"] = restart_service(args, new)
    emit(args, report, describe(report))
    restart = report["restart"]
    if restart.get("restarted") and restart.get("daemonVersion") != new:
        return ExitCode.FAILURE
    return ExitCode.OK


def describe(report: dict[str, Any]) -> str:
    old, new = report["from"], report["to"]
    lines = [f"agent-relay {old} → {new}" if old != new else f"agent-relay is already {new}"]
    providers = report["providers"]
    if providers.get("ok"):
        names = ", ".join(p["name"] for p in providers.get("providers", []))
        lines.append(f"providers refreshed: {names or 'none'}")
    else:
        lines.append(f"warning: provider refresh failed: {providers.get('error')}")
    restart = report["restart"]
    if restart.get("restarted"):
        lines.append(f"daemon restarted ({restart['backend']}), reports {restart['daemonVersion']}")
    if restart.get("reason"):
        lines.append(("note: " if not restart.get("restarted") else "warning: ")
                     + restart["reason"])
    return "\n".join(lines)
