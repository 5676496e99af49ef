"""`relayctl watch`: follow the relay's event stream (SSE), resuming after dropped connections."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

from relayctl.argtypes import non_negative_int, positive_int, seconds
from relayctl.cli import ExitCode
from relayctl.clients.events import SseEvent, stream_events
from relayctl.commands.agent_side import (
    acting_agent,
    add_agent_option,
    client_for,
    message_line,
    sentence,
)
from relayctl.terminal import escape


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "print events as they arrive"
    parser = subparsers.add_parser(
        "watch", parents=[common], help=summary,
        description=sentence(summary) + " (messages, claims, agent status, tasks, pairs). "
        "Runs until interrupted, or until --count events or --timeout seconds. Reconnects by "
        "itself without losing events.",
    )
    add_agent_option(parser, "--for", "show what this agent should see")
    parser.add_argument("--all", action="store_true",
                        help="every event on the relay (the firehose) instead of one agent's")
    parser.add_argument("--since-id", type=non_negative_int, metavar="N",
                        help="first replay the events after event id N")
    parser.add_argument("--type", action="append", metavar="TYPE", dest="types",
                        help="only events of this type or family, e.g. message.new or task "
                        "(repeatable)")
    parser.add_argument("--count", type=positive_int, metavar="N",
                        help="stop after printing N events")
    parser.add_argument("--timeout", type=seconds, metavar="S", help="stop after S seconds")
    parser.set_defaults(func=_watch)


def _watch(args: argparse.Namespace) -> int:
    query = {} if args.all else {"for": acting_agent(args.agent)}
    deadline = None if args.timeout is None else time.monotonic() + args.timeout
    printed = 0
    client = client_for(args)
    whose = "every agent" if args.all else query["for"]

    def say_connected(reconnected: bool) -> None:
        verb = "reconnected" if reconnected else "watching events"
        print(escape(f"relayctl: {verb} for {whose} at {client.url}"), file=sys.stderr,
              flush=True)

    events = stream_events(client, query, last_event_id=args.since_id, deadline=deadline,
                           on_reconnect=_say_reconnecting, on_connect=say_connected)
    try:
        for event in events:
            if not _wanted(event, args.types):
                continue
            print(_render(event, args.json), flush=True)  # human lines escaped in _render
            printed += 1
            if args.count is not None and printed >= args.count:
                break
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep the final flush from failing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        events.close()
    return ExitCode.OK


def _say_reconnecting(attempt: int, reason: str) -> None:
    print(escape(f"relayctl: {reason}; reconnecting (attempt {attempt})"), file=sys.stderr,
          flush=True)


def _wanted(event: SseEvent, types: list[str] | None) -> bool:
    if not types:
        return True
    return any(event.type == t or event.type.startswith(t.rstrip(".") + ".") for t in types)


def _render(event: SseEvent, as_json: bool) -> str:
    if as_json:
        return json.dumps({"id": event.id, "event": event.type, "data": event.data},
                          separators=(",", ":"), sort_keys=True)
    return escape(f"[{event.id}] {event.type}: {_describe(event)}", keep_newlines=False)


def _describe(event: SseEvent) -> str:
    data = event.data
    if not isinstance(data, dict):
        return str(data)
    if event.type == "message.new":
        return message_line(data)
    if event.type == "message.claimed":
        return f"message #{data.get('id')} claimed by {data.get('claimedBy')}"
    if event.type.startswith("agent."):
        status = f" is {data['status']}" if data.get("status") else " removed"
        return f"agent {data.get('id')}{status}"
    if event.type.startswith("task."):
        return f"task {data.get('id')} [{data.get('status')}] {data.get('title', '')}".rstrip()
    if event.type.startswith("pair."):
        return (f"pair {data.get('id')} [{data.get('status')}] "
                f"{data.get('initiator')} ↔ {data.get('partner')}")
    return json.dumps(data, separators=(",", ":"), sort_keys=True)
