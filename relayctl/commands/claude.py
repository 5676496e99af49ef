"""`relayctl claude hook EVENT` and `relayctl claude monitor`: what the Claude Code plugin runs
(providers/claude/). The logic lives in relayctl.providers.claude_hook and claude_monitor."""

from __future__ import annotations

import argparse
from typing import Any

from relayctl.providers.claude_hook import EVENTS


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    claude = subparsers.add_parser(
        "claude", help="what the Claude Code plugin runs (hooks and the monitor)",
        description="Commands the Agent Relay Claude Code plugin runs; install the plugin with "
        "`relayctl provider install claude`.",
    )
    actions = claude.add_subparsers(dest="claude_action", metavar="ACTION")
    actions.required = True
    hook = actions.add_parser(
        "hook", help="run one Claude Code hook (Claude's hook JSON on stdin)",
        description="Run the Claude Code hook EVENT with Claude's hook JSON on standard input. "
        "Always exits 0, within 5 seconds; prints only a valid hook answer on stdout and at "
        "most one line on stderr.",
        epilog="Events: " + ", ".join(EVENTS) + ".",
    )
    hook.add_argument("event", metavar="EVENT", help="the hook event, e.g. SessionStart")
    hook.set_defaults(func=_hook)
    monitor = actions.add_parser(
        "monitor", help="print one line per message delivered to this session",
        description="The plugin monitor: prints one line per message delivered to this "
        "session's agent, records it delivered, heartbeats the agent, and follows the relay "
        "across restarts. Runs until Claude Code ends it.",
    )
    monitor.set_defaults(func=_monitor)
    disconnect = actions.add_parser(
        "disconnect", parents=[common], help="take this session off the relay (offline)",
        description="Mark this session's agent offline and tell its monitor to stop "
        "delivering and heartbeating, until the session starts again or --undo.",
    )
    disconnect.add_argument("--undo", action="store_true", help="connect the session again")
    disconnect.set_defaults(func=_disconnect)


def _hook(args: argparse.Namespace) -> int:
    from relayctl.providers import claude_hook

    return claude_hook.run(args.event)


def _disconnect(args: argparse.Namespace) -> int:
    import os

    from relayctl.cli import CliError, ExitCode, emit
    from relayctl.commands.agent_side import client_for
    from relayctl.providers import claude_state

    agent_id = os.environ.get("AGENT_RELAY_AGENT_ID", "").strip() or \
        claude_state.session_agent(claude_state.claude_pid())
    if not agent_id:
        raise CliError("cannot tell this session's agent: set AGENT_RELAY_AGENT_ID",
                       ExitCode.USAGE)
    claude_state.update(claude_state.agent_file(agent_id), disconnected=not args.undo)
    client = client_for(args)
    if args.undo:
        agent = client.post(f"/agents/{agent_id}/heartbeat", {"status": "online"})
        emit(args, agent, f"{agent_id} is connected again; its monitor resumes delivery")
    else:
        agent = client.patch(f"/agents/{agent_id}", {"status": "offline"})
        emit(args, agent, f"{agent_id} is offline; its monitor stops delivering (messages "
             "wait in the inbox). `relayctl claude disconnect --undo` connects it again.")
    return ExitCode.OK


def _monitor(args: argparse.Namespace) -> int:
    from relayctl.providers import claude_monitor

    return claude_monitor.run()
