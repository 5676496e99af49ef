"""`relayctl pair …`: start, accept, reject, talk in and hang up pair sessions."""

from __future__ import annotations

import argparse
from typing import Any

from relayctl.argtypes import positive_int
from relayctl.cli import ExitCode, emit
from relayctl.commands.agent_side import (
    acting_agent,
    add_agent_option,
    client_for,
    lines,
    pair_line,
    read_body,
    sentence,
)

PAIR_STATUSES = ("pending", "active", "rejected", "ended", "expired")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "pair sessions: a focused one-to-one conversation between two agents"
    parser = subparsers.add_parser("pair", parents=[common], help=summary,
                                   description=sentence(summary) + ".")
    actions = parser.add_subparsers(dest="pair_command", metavar="ACTION")
    actions.required = True
    _add(actions, common, "start", "invite an agent to a pair session", _start,
         target=True)
    _add(actions, common, "accept", "accept an invitation (the invited partner)", _accept)
    _add(actions, common, "reject", "decline an invitation", _reject, reason=True)
    _add(actions, common, "say", "send a message inside an active pair", _say, body=True)
    _add(actions, common, "hangup", "end a pending or active pair", _hangup, reason=True)
    _add(actions, common, "show", "show one pair", _show, acting=False)
    lister = actions.add_parser("list", parents=[common], help="list pairs",
                                description="List pair sessions, oldest first.")
    lister.add_argument("--status", choices=PAIR_STATUSES, help="only pairs in this state")
    lister.add_argument("--agent", help="only pairs this agent takes part in")
    lister.set_defaults(func=_list)


def _add(actions: Any, common: argparse.ArgumentParser, name: str, summary: str, func: Any,
         *, target: bool = False, reason: bool = False, body: bool = False,
         acting: bool = True) -> None:
    parser = actions.add_parser(name, parents=[common], help=summary,
                                description=sentence(summary) + ".")
    if target:
        parser.add_argument("to", metavar="TO", help="agent id, id:, label:, tag:, cap:, "
                            "machine: or a word matched against id, label, provider, tags, caps")
        parser.add_argument("--objective", help="what the pair is for")
    else:
        parser.add_argument("pair_id", type=positive_int, metavar="ID")
    if body:
        parser.add_argument("body", metavar="BODY", help='message text ("-" reads stdin)')
    if reason:
        parser.add_argument("--reason", help="why (shown to the other side)")
    if acting:
        flag = "--from" if target or body else "--agent"
        add_agent_option(parser, flag, "acting agent")
    parser.set_defaults(func=func)


def _show_pair(args: argparse.Namespace, pair: dict[str, Any], verb: str) -> int:
    emit(args, pair, f"{verb} {pair_line(pair)}".strip())
    return ExitCode.OK


def _start(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"from": acting_agent(args.agent), "to": args.to}
    if args.objective:
        body["objective"] = args.objective
    return _show_pair(args, client_for(args).post("/pairs", body), "invited:")


def _action(args: argparse.Namespace, action: str, extra: dict[str, Any]) -> dict[str, Any]:
    body = {"agent": acting_agent(args.agent), **extra}
    pair: dict[str, Any] = client_for(args).post(f"/pairs/{args.pair_id}/{action}", body)
    return pair


def _accept(args: argparse.Namespace) -> int:
    return _show_pair(args, _action(args, "accept", {}), "accepted")


def _reject(args: argparse.Namespace) -> int:
    extra = {"reason": args.reason} if args.reason else {}
    return _show_pair(args, _action(args, "reject", extra), "rejected")


def _hangup(args: argparse.Namespace) -> int:
    extra = {"reason": args.reason} if args.reason else {}
    return _show_pair(args, _action(args, "hangup", extra), "hung up")


def _say(args: argparse.Namespace) -> int:
    body = {"from": acting_agent(args.agent), "body": read_body(args.body)}
    message = client_for(args).post(f"/pairs/{args.pair_id}/messages", body)
    emit(args, message, f"said #{message.get('id')} in pair {args.pair_id}")
    return ExitCode.OK


def _show(args: argparse.Namespace) -> int:
    return _show_pair(args, client_for(args).get(f"/pairs/{args.pair_id}"), "")


def _list(args: argparse.Namespace) -> int:
    answer = client_for(args).get("/pairs", {"status": args.status, "agent": args.agent})
    emit(args, answer, lines(answer.get("pairs", []), pair_line, "no pairs"))
    return ExitCode.OK
