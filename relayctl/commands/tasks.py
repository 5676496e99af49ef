"""`relayctl tasks …`: list tasks, claim one, report its status."""

from __future__ import annotations

import argparse
import json
from typing import Any

from relayctl.argtypes import list_limit, positive_int
from relayctl.cli import ExitCode, emit
from relayctl.commands.agent_side import (
    acting_agent,
    add_agent_option,
    client_for,
    lines,
    sentence,
    task_line,
)

TASK_STATUSES = ("open", "claimed", "in_progress", "blocked", "done", "failed", "cancelled")


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "list tasks, or claim one and report on it"
    parser = subparsers.add_parser(
        "tasks", parents=[common], help=summary,
        description="List tasks (without an action), or act on one.",
    )
    parser.add_argument("--status", choices=TASK_STATUSES, help="only tasks in this state")
    parser.add_argument("--source", help="only tasks from this integration")
    parser.add_argument("--target", help="only tasks sent to this target")
    parser.add_argument("--limit", type=list_limit, metavar="N", help="at most N (max 1000)")
    parser.set_defaults(func=_list)
    actions = parser.add_subparsers(dest="task_command", metavar="ACTION")
    _register_show(actions, common)
    _register_claim(actions, common)
    _register_status(actions, common)


def _register_show(actions: Any, common: argparse.ArgumentParser) -> None:
    parser = actions.add_parser("show", parents=[common], help="show one task",
                                description="Show one task.")
    parser.add_argument("task_id", type=positive_int, metavar="ID")
    parser.set_defaults(func=_show)


def _register_claim(actions: Any, common: argparse.ArgumentParser) -> None:
    summary = "claim a task (exactly one agent wins)"
    parser = actions.add_parser("claim", parents=[common], help=summary,
                                description=sentence(summary) + ".")
    parser.add_argument("task_id", type=positive_int, metavar="ID")
    add_agent_option(parser, "--agent", "the claiming agent")
    parser.set_defaults(func=_claim)


def _register_status(actions: Any, common: argparse.ArgumentParser) -> None:
    summary = "move a task you claimed to a new status"
    parser = actions.add_parser(
        "status", parents=[common], help=summary, description=sentence(summary) + ".",
        epilog="--progress and --result take JSON (50, {\"done\": 3}) or plain text.",
    )
    parser.add_argument("task_id", type=positive_int, metavar="ID")
    parser.add_argument("new_status", choices=TASK_STATUSES, metavar="STATUS",
                        help=" ".join(TASK_STATUSES))
    parser.add_argument("--progress", type=_json_or_text, help="how far along it is")
    parser.add_argument("--result", type=_json_or_text, help="the outcome")
    add_agent_option(parser, "--agent", "the agent holding the claim")
    parser.set_defaults(func=_status)


def _json_or_text(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _list(args: argparse.Namespace) -> int:
    query = {"status": args.status, "source": args.source, "target": args.target,
             "limit": args.limit}
    answer = client_for(args).get("/tasks", query)
    emit(args, answer, lines(answer.get("tasks", []), task_line, "no tasks"))
    return ExitCode.OK


def _show(args: argparse.Namespace) -> int:
    task = client_for(args).get(f"/tasks/{args.task_id}")
    emit(args, task, task_line(task))
    return ExitCode.OK


def _claim(args: argparse.Namespace) -> int:
    body = {"agent": acting_agent(args.agent)}
    task = client_for(args).post(f"/tasks/{args.task_id}/claim", body)
    emit(args, task, f"claimed {task_line(task)}")
    return ExitCode.OK


def _status(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"agent": acting_agent(args.agent), "status": args.new_status}
    if args.progress is not None:
        body["progress"] = args.progress
    if args.result is not None:
        body["result"] = args.result
    task = client_for(args).patch(f"/tasks/{args.task_id}/status", body)
    emit(args, task, f"updated {task_line(task)}")
    return ExitCode.OK
