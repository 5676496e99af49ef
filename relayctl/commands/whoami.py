"""`relayctl whoami`: the agent id the agent-side commands act as without --from / --for."""

from __future__ import annotations

import argparse
import os
from typing import Any

from relayctl.cli import ExitCode, emit
from relayctl.commands.agent_side import acting_agent


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    parser = subparsers.add_parser(
        "whoami", parents=[common], help="print the agent id this shell acts as",
        description="Print the agent id that send, inbox, watch, claim and the other "
        "agent-side commands use without --from / --for / --agent: AGENT_RELAY_AGENT_ID when "
        "set, else {hostname}-{project}-{hash} derived from this machine, the project "
        "(git work tree) and the user (or AGENT_RELAY_SESSION).",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    agent_id = acting_agent(None)
    source = "AGENT_RELAY_AGENT_ID" if os.environ.get("AGENT_RELAY_AGENT_ID", "").strip() \
        else "derived"
    emit(args, {"agentId": agent_id, "source": source}, agent_id)
    return ExitCode.OK
