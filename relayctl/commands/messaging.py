"""Agent-side commands: send, send-claimable, inbox, claim; and the registration of the other
agent-side command modules (watch, agents, pairs, tasks)."""

from __future__ import annotations

import argparse
from typing import Any

from relayctl.argtypes import MAX_WAIT, list_limit, non_negative_int, positive_int, wait_seconds
from relayctl.cli import ExitCode, emit
from relayctl.commands import agents, pairs, tasks, watch
from relayctl.commands.agent_side import (
    acting_agent,
    add_agent_option,
    client_for,
    implicit_agent,
    lines,
    message_line,
    read_body,
    sentence,
)


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    _register_send(subparsers, common, "send", claimable=False)
    _register_send(subparsers, common, "send-claimable", claimable=True)
    _register_inbox(subparsers, common)
    _register_claim(subparsers, common)
    watch.register(subparsers, common)
    agents.register(subparsers, common)
    pairs.register(subparsers, common)
    tasks.register(subparsers, common)


# ----------------------------------------------------------------------------- send


def _register_send(subparsers: Any, common: argparse.ArgumentParser, name: str,
                   claimable: bool) -> None:
    if claimable:
        summary = "send a message that exactly one recipient can claim"
    else:
        summary = "send a message to an agent or a selector"
    parser = subparsers.add_parser(
        name, parents=[common], help=summary, description=sentence(summary) + ".",
        epilog="TO is an agent id, id:ID, tag:T, cap:C, label:L, machine:M or broadcast.",
    )
    parser.add_argument("to", metavar="TO", help="recipient agent id or selector")
    parser.add_argument("body", metavar="BODY", help='message text ("-" reads standard input)')
    add_agent_option(parser, "--from", "sender name")
    parser.add_argument("--subject", help="a subject line")
    parser.add_argument("--channel", help="deliver to selector recipients on this channel only")
    parser.add_argument("--reply-to", type=positive_int, metavar="MESSAGE_ID",
                        help="the message this replies to (joins its thread)")
    parser.add_argument("--idempotency-key", metavar="KEY",
                        help="retry-safe key: repeating it returns the first message")
    parser.set_defaults(func=_send, claimable=claimable)


def _send(args: argparse.Namespace) -> int:
    client = client_for(args)
    body: dict[str, Any] = {
        "from": args.agent or implicit_agent(client),
        "to": args.to,
        "body": read_body(args.body),
    }
    optional = {"subject": args.subject, "channel": args.channel, "replyTo": args.reply_to}
    body.update({k: v for k, v in optional.items() if v is not None})
    if args.claimable:
        body["claimable"] = True
    headers = {"Idempotency-Key": args.idempotency_key} if args.idempotency_key else None
    message = client.post("/messages", body, headers=headers)
    emit(args, message, _sent_line(message))
    return ExitCode.OK


def _sent_line(message: dict[str, Any]) -> str:
    recipients = message.get("recipients") or []
    kind = "claimable message" if message.get("claimable") else "message"
    if not recipients:
        return f"stored {kind} #{message['id']} for {message['to']}; no agent matches it yet"
    return f"sent {kind} #{message['id']} to {message['to']}: delivered to {', '.join(recipients)}"


# ----------------------------------------------------------------------------- inbox


def _register_inbox(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "list the messages an agent received"
    parser = subparsers.add_parser("inbox", parents=[common], help=summary,
                                   description=sentence(summary) + ", oldest first.")
    add_agent_option(parser, "--for", "whose inbox")
    parser.add_argument("--unread", action="store_true", help="only messages not yet read")
    parser.add_argument("--since", type=non_negative_int, metavar="ID",
                        help="only messages with an id above ID")
    parser.add_argument("--limit", type=list_limit, metavar="N", help="at most N (max 1000)")
    parser.add_argument("--wait", type=wait_seconds, metavar="S",
                        help=f"wait up to S seconds (max {MAX_WAIT}) for a message to arrive")
    parser.add_argument("--mark-read", action="store_true",
                        help="mark the listed messages read")
    parser.set_defaults(func=_inbox)


def _inbox(args: argparse.Namespace) -> int:
    client = client_for(args, timeout=10.0 + (args.wait or 0))
    reader = args.agent or implicit_agent(client)
    query = {"for": reader, "unread": True if args.unread else None, "since": args.since,
             "limit": args.limit, "wait": args.wait or None}
    answer = client.get("/messages", query)
    messages = answer.get("messages", [])
    if args.mark_read:
        for message in messages:
            if message.get("read") is False:
                updated = client.patch(f"/messages/{message['id']}",
                                       {"agent": reader, "read": True})
                message.update(read=True, readAt=updated.get("readAt"))
    emit(args, answer, lines(messages, message_line, f"no messages for {reader}"))
    return ExitCode.OK


# ----------------------------------------------------------------------------- claim


def _register_claim(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "claim a claimable message (exactly one agent wins)"
    parser = subparsers.add_parser("claim", parents=[common], help=summary,
                                   description=sentence(summary) + ".")
    parser.add_argument("message_id", type=positive_int, metavar="MESSAGE_ID")
    add_agent_option(parser, "--agent", "the claiming agent")
    parser.set_defaults(func=_claim)


def _claim(args: argparse.Namespace) -> int:
    agent = acting_agent(args.agent)
    message = client_for(args).post(f"/messages/{args.message_id}/claim", {"agent": agent})
    emit(args, message, f"claimed message #{message['id']} for {message.get('claimedBy')}")
    return ExitCode.OK
