"""Agent-side commands about agents: register, label, tags, agents."""

from __future__ import annotations

import argparse
from typing import Any
from urllib.parse import quote

from relayctl.argtypes import comma_or_many
from relayctl.cli import CliError, ExitCode, emit
from relayctl.clients.api import RelayError
from relayctl.commands.agent_side import agent_line, client_for, lines, sentence
from relayctl.provider_env import APPROVALS, ProviderEnvError, identity_from_env
from relayd import __version__

STATUSES = ("online", "busy", "idle", "offline")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    _register_register(subparsers, common)
    _register_heartbeat(subparsers, common)
    _register_label(subparsers, common)
    _register_tags(subparsers, common)
    _register_agents(subparsers, common)


# ----------------------------------------------------------------------------- register


def _register_register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "register this agent (or update it) from the provider environment"
    parser = subparsers.add_parser(
        "register", parents=[common], help=summary,
        description=sentence(summary) + ". Flags override AGENT_RELAY_* variables, which "
        "override the chosen profile (AGENT_RELAY_PROFILE). See docs/cli.md.",
    )
    parser.add_argument("--id", help="agent id (default: AGENT_RELAY_AGENT_ID, else "
                        "{hostname}-{project}-{session-hash})")
    parser.add_argument("--label", help="a human-readable name")
    parser.add_argument("--tags", nargs="+", metavar="TAG", help="tags (comma or space separated)")
    parser.add_argument("--caps", nargs="+", metavar="CAP", help="capabilities, e.g. chat,review")
    parser.add_argument("--channels", nargs="+", metavar="CHANNEL",
                        help="channels to receive (default: all)")
    parser.add_argument("--approval", choices=APPROVALS, help="how much it may do unasked")
    parser.add_argument("--provider", help="the provider's name, e.g. claude-code")
    parser.set_defaults(func=_register)


def registration(args: argparse.Namespace) -> dict[str, Any]:
    """The provider environment's registration, with the flags that are given on top."""
    try:
        identity = identity_from_env()
    except ProviderEnvError as exc:
        raise CliError(str(exc)) from None
    body = {**identity.registration(), "version": __version__}
    flags = {
        "id": getattr(args, "id", None),
        "label": getattr(args, "label", None),
        "tags": comma_or_many(getattr(args, "tags", None)),
        "capabilities": comma_or_many(getattr(args, "caps", None)),
        "channels": comma_or_many(getattr(args, "channels", None)),
        "approval": getattr(args, "approval", None),
        "provider": getattr(args, "provider", None),
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    return body


def _register(args: argparse.Namespace) -> int:
    agent = client_for(args).post("/agents", registration(args))
    emit(args, agent, f"registered {agent_line(agent)}")
    return ExitCode.OK


# ----------------------------------------------------------------------------- heartbeat


def _register_heartbeat(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "tell the relay this agent is alive (registers it again if the relay forgot it)"
    parser = subparsers.add_parser("heartbeat", parents=[common], help=summary,
                                   description=sentence(summary) + ". Run it more often than "
                                   "the relay's STALE_TTL_MS (default 90 s).")
    parser.add_argument("--id", help="agent id (default: as for register)")
    parser.add_argument("--status", choices=("online", "busy", "idle"), help="report a status")
    parser.set_defaults(func=_heartbeat)


def _heartbeat(args: argparse.Namespace) -> int:
    client = client_for(args)
    agent_id = args.id or registration(args)["id"]
    body = {"status": args.status} if args.status else {}
    try:
        agent = client.post(f"/agents/{_quoted(agent_id)}/heartbeat", body)
        verb = "alive:"
    except RelayError as exc:
        if exc.status != 404:
            raise
        agent = client.post("/agents", {**registration(args), "id": agent_id, **body})
        verb = "registered again:"
    emit(args, agent, f"{verb} {agent_line(agent)}")
    return ExitCode.OK


# ----------------------------------------------------------------------------- label, tags


def _register_label(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "set an agent's label"
    parser = subparsers.add_parser("label", parents=[common], help=summary,
                                   description=sentence(summary) + ".")
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("label", metavar="LABEL")
    parser.set_defaults(func=_label)


def _label(args: argparse.Namespace) -> int:
    agent = client_for(args).patch(f"/agents/{_quoted(args.agent_id)}/label",
                                   {"label": args.label})
    emit(args, agent, f"labelled {agent_line(agent)}")
    return ExitCode.OK


def _register_tags(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "replace an agent's tags"
    parser = subparsers.add_parser("tags", parents=[common], help=summary,
                                   description=sentence(summary) + ".")
    parser.add_argument("agent_id", metavar="AGENT")
    parser.add_argument("tags", nargs="+", metavar="TAG", help="the new tags (comma or space "
                        "separated)")
    parser.set_defaults(func=_tags)


def _tags(args: argparse.Namespace) -> int:
    tags = comma_or_many(args.tags) or []
    agent = client_for(args).patch(f"/agents/{_quoted(args.agent_id)}", {"tags": tags})
    emit(args, agent, f"tagged {agent_line(agent)}")
    return ExitCode.OK


def _quoted(agent_id: str) -> str:
    return quote(agent_id, safe="")


# ----------------------------------------------------------------------------- agents


def _register_agents(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "list registered agents"
    parser = subparsers.add_parser("agents", parents=[common], help=summary,
                                   description=sentence(summary) + ".")
    parser.add_argument("--tag", help="only agents with this tag")
    parser.add_argument("--machine", help="only agents on this machine")
    parser.add_argument("--status", choices=STATUSES, help="only agents in this state")
    parser.add_argument("--capability", help="only agents with this capability")
    parser.set_defaults(func=_agents)


def _agents(args: argparse.Namespace) -> int:
    query = {"tag": args.tag, "machine": args.machine, "status": args.status,
             "capability": args.capability}
    answer = client_for(args).get("/agents", query)
    emit(args, answer, lines(answer.get("agents", []), agent_line, "no agents"))
    return ExitCode.OK
