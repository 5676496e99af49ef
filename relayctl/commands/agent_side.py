"""What the agent-side commands share: the API client, the acting agent id, and compact
one-line renderings of agents, messages, pairs and tasks."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from relayctl.cli import CliError, ExitCode
from relayctl.clients.api import ApiClient, find_relay
from relayctl.provider_env import ProviderEnvError, default_agent_id
from relayctl.terminal import one_line

BODY_PREVIEW = 100


def client_for(args: argparse.Namespace, timeout: float | None = None) -> ApiClient:
    address = find_relay(getattr(args, "config", None))
    return ApiClient(address) if timeout is None else ApiClient(address, timeout)


def acting_agent(explicit: str | None) -> str:
    """The --from/--for/--agent value, else AGENT_RELAY_AGENT_ID or the provider id."""
    if explicit:
        return explicit
    try:
        return default_agent_id()
    except ProviderEnvError as exc:
        raise CliError(str(exc)) from None


def implicit_agent(client: ApiClient) -> str:
    """The acting agent when no --from/--for/--agent was given (`relayctl whoami`), registered
    on first use, so whoever gets its messages can answer it and its inbox exists."""
    from relayctl.clients.api import RelayError
    from relayctl.provider_env import identity_from_env

    agent_id = acting_agent(None)
    try:
        client.get(f"/agents/{quote(agent_id, safe='')}")
    except RelayError as exc:
        if exc.status != 404:
            raise
        try:
            body = identity_from_env().registration()
        except ProviderEnvError as env_error:
            raise CliError(str(env_error)) from None
        body.setdefault("provider", "relayctl")
        client.post("/agents", body)
    return agent_id


def add_agent_option(parser: argparse.ArgumentParser, flag: str, what: str) -> None:
    parser.add_argument(
        flag, dest="agent", metavar="AGENT",
        help=f"{what} (default: AGENT_RELAY_AGENT_ID, else this session's provider id)",
    )


def sentence(summary: str) -> str:
    """A --help one-liner as the start of a description: capitalised."""
    return summary[:1].upper() + summary[1:]


def read_body(text: str) -> str:
    """BODY as given, or standard input for "-"."""
    body = sys.stdin.read().removesuffix("\n") if text == "-" else text
    if not body.strip():
        raise CliError("the message body is empty", ExitCode.USAGE)
    return body


# ----------------------------------------------------------------------------- rendering


def when(stamp: str | None) -> str:
    """An ISO-8601 UTC stamp as local "YYYY-MM-DD HH:MM:SS"."""
    if not stamp:
        return "-"
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return stamp
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def preview(text: str | None, limit: int = BODY_PREVIEW) -> str:
    flat = " ".join((text or "").split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def message_line(message: dict[str, Any]) -> str:
    marks = []
    if message.get("read") is False:
        marks.append("new")
    if message.get("claimable"):
        claimer = message.get("claimedBy")
        marks.append(f"claimed by {claimer}" if claimer else "claimable")
    if message.get("channel"):
        marks.append(f"#{message['channel']}")
    if message.get("replyTo"):
        marks.append(f"re #{message['replyTo']}")
    flags = f" [{', '.join(marks)}]" if marks else ""
    subject = f"{one_line(message['subject'])}: " if message.get("subject") else ""
    # `from` is a name the sender chose; sentBy is who the relay authenticated
    via = f" (sent by {message['sentBy']})" if message.get("sentBy") else ""
    return (f"#{message['id']} {when(message.get('createdAt'))} "
            f"{message.get('from')}{via} → {message.get('to')}{flags}  "
            f"{subject}{preview(message.get('body'))}")


def agent_line(agent: dict[str, Any]) -> str:
    label = f' "{one_line(agent["label"])}"' if agent.get("label") else ""
    where = "/".join(str(agent[k]) for k in ("machine", "project") if agent.get(k))
    details = [
        where,
        f"tags={','.join(agent['tags'])}" if agent.get("tags") else "",
        f"caps={','.join(agent.get('capabilities') or [])}",
        f"approval={agent['approval']}" if agent.get("approval") not in (None, "open") else "",
        f"seen {when(agent.get('lastSeenAt'))}",
    ]
    return f"{agent['id']}{label} [{agent.get('status')}]  " + "  ".join(d for d in details if d)


def pair_line(pair: dict[str, Any]) -> str:
    objective = f"  {preview(pair['objective'], 60)}" if pair.get("objective") else ""
    ended = ""
    if pair.get("endedBy") or pair.get("reason"):
        ended = f"  (ended by {pair.get('endedBy') or '-'}: {pair.get('reason') or 'no reason'})"
    return (f"pair {pair['id']} [{pair.get('status')}] {pair.get('initiator')} ↔ "
            f"{pair.get('partner')}{objective}{ended}")


def task_line(task: dict[str, Any]) -> str:
    claimer = f" by {task['claimedBy']}" if task.get("claimedBy") else ""
    progress = f", progress {task['progress']}" if task.get("progress") not in (None, "") else ""
    count = task.get("occurrenceCount") or 1
    seen = f" (seen {count} times)" if count > 1 else ""
    severity = f" {task['severity']}" if task.get("severity") else ""
    return (f"task {task['id']} [{task.get('status')}{claimer}{progress}]{severity} "
            f"{task.get('source')} → {task.get('target')}{seen}  {preview(task.get('title'), 80)}")


def lines(items: list[dict[str, Any]], render: Callable[[dict[str, Any]], str],
          empty: str) -> str:
    return "\n".join(render(item) for item in items) if items else empty
