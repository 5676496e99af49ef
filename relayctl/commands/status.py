"""`relayctl status`: is relayd up, where, since when, how big; and the service manager's view."""

from __future__ import annotations

import argparse
from typing import Any

from relayctl.cli import CliError, ExitCode, emit
from relayctl.clients.control import START_HINT, ControlClient
from relayctl.service import detect


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "status", parents=[common], help="show whether relayd runs, and its figures",
        description="Ask the running relayd (over its control socket) for its version, pid, "
        "listen address, uptime, counts and memory. Exits 3 when relayd is not running.",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    service = service_state()
    try:
        status = ControlClient.from_args(args).get("/v1/status")
    except CliError as exc:
        if exc.code != ExitCode.NOT_RUNNING:
            raise
        # "not running" is the status being asked for, so it goes to stdout like any answer
        reason = exc.message.replace(START_HINT, start_hint(service))
        line = f"relayctl: {reason}{_service_note(service)}"
        emit(args, {"running": False, "reason": reason, "service": service}, line)
        return ExitCode.NOT_RUNNING
    status = {"running": True, **status, "service": service}
    emit(args, status, describe(status))
    return ExitCode.OK


def service_state() -> dict[str, Any] | None:
    """What the service manager says, or None where there is none (or it cannot tell)."""
    try:
        return detect().status().to_json()
    except Exception:  # a failing service manager must not stop `relayctl status`
        return None


def start_hint(service: dict[str, Any] | None) -> str:
    """How to start relayd here: the service only where it is installed and its manager
    answers; else the foreground, saying why the service cannot help."""
    if service and service.get("installed") and service.get("state") != "unknown":
        return START_HINT
    problem = _manager_problem()
    if problem:
        return problem
    if service is None:
        return "start it with `relayd`"
    return ("start it with `relayd`, or install the service with "
            "`relayctl daemon install --enable --start --yes`")


def _manager_problem() -> str | None:
    try:
        manager = detect()
        probe = getattr(manager, "manager_problem", None)
        return probe() if probe is not None else None
    except Exception:  # no manager at all: nothing to say about one
        return None


def _service_note(service: dict[str, Any] | None) -> str:
    if not service or not service.get("installed"):
        return ""
    return f" (the {service.get('backend')} service is {service.get('state')})"


def describe(status: dict[str, Any]) -> str:
    counts = status.get("counts", {})
    agents, messages = counts.get("agents", {}), counts.get("messages", {})
    lines = [
        f"relayd {status.get('version')} is running (pid {status.get('pid')})",
        f"  listening  {status.get('listen', {}).get('url')}",
        f"  uptime     {_duration(float(status.get('uptimeSeconds', 0)))}",
        f"  agents     {agents.get('total', 0)} ({agents.get('online', 0)} online)",
        f"  messages   {messages.get('total', 0)} ({messages.get('unread', 0)} unread)",
        f"  streams    {status.get('connections', {}).get('sse', 0)} SSE connections",
        _database_line(status.get("database") or {}),
        f"  memory     {_size(status.get('memory', {}).get('rssBytes', 0))} RSS",
        f"  socket     {status.get('socket')}",
    ]
    replica = status.get("replica") or {}
    if replica.get("backend") not in (None, "sqlite"):
        lines.append(f"  replica    {replica.get('id')} ({replica.get('backend')})")
    service = status.get("service") or {}
    if service.get("installed"):
        enabled = service.get("enabled")
        note = "" if enabled is None else (", enabled" if enabled else ", not enabled")
        lines.append(f"  service    {service.get('backend')}: {service.get('state')}{note}")
    return "\n".join(lines)


def _database_line(database: dict[str, Any]) -> str:
    backend = database.get("backend") or "sqlite"
    where = database.get("path") if backend == "sqlite" else database.get("location")
    size = database.get("sizeBytes")
    shown = "" if size is None else f" ({_size(int(size))})"
    suffix = "" if backend == "sqlite" else f" [{backend}]"
    return f"  database   {where}{shown}{suffix}"


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h {minutes}m"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m {secs}s"


def _size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB"):
        if value < 1024:
            return f"{value:.0f} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
