"""`relayctl mcp`: the relay's MCP tools on stdio, for one session.

The same tools relayd serves at /mcp (relayd/mcp/specs.py), acting as this session's agent id,
so the tools have no `agent` argument. The id is looked up at each call: `--agent`, else
AGENT_RELAY_AGENT_ID, else (under Claude Code) the id the session's SessionStart hook recorded
or one derived from $CLAUDE_CODE_SESSION_ID, as the plugin's monitor does, else the provider
id relayctl derives for the session. Each call goes to the relay's HTTP API through
relayctl's API client, which finds the relay the usual way (AGENT_RELAY_URL/TOKEN, else the
local config); the relay validates the arguments, so its error sentences reach the model. A
relay that is down or refuses makes that one call an error result; the server keeps running.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable
from functools import partial
from typing import Any

from relayctl.cli import CliError, ExitCode
from relayctl.clients.api import ApiClient, RelayError
from relayctl.commands.agent_side import acting_agent, add_agent_option, client_for, sentence
from relayctl.provider_env import ProviderEnvError, identity_from_env
from relayctl.providers import claude_state
from relayd.mcp.specs import AGENT_ARG, INBOX_DEFAULT_LIMIT, PAIR_ACTIONS, ToolFailure, ToolSpec

Json = dict[str, Any]
DEFAULT_PROVIDER = "mcp"


def register(subparsers: Any, common: argparse.ArgumentParser) -> None:
    summary = "serve the relay's MCP tools on stdio for one session"
    parser = subparsers.add_parser(
        "mcp", parents=[common], help=summary, description=sentence(summary) + ".",
        epilog="Add it to an MCP client as the command `relayctl mcp` (docs/providers.md). "
               "The tools act as this session's agent id.",
    )
    add_agent_option(parser, "--agent", "the agent this session acts as")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        import anyio
        from mcp.server.stdio import stdio_server

        from relayd.mcp.server import build_server
    except ImportError as exc:
        raise CliError(f"relayctl mcp needs the mcp package ({exc}); reinstall agent-relay"
                       ) from None
    tools = SessionTools(session_agent(args.agent), partial(_client, args))
    server = build_server(tools.call, session_agent=True)

    async def serve() -> None:
        async with stdio_server() as (read, write):
            await server.run(read, write, server.create_initialization_options())

    with contextlib.suppress(KeyboardInterrupt):
        anyio.run(serve)
    return ExitCode.OK


def _client(args: argparse.Namespace, timeout: float | None = None) -> ApiClient:
    return client_for(args, timeout)


def session_agent(explicit: str | None) -> Callable[[], str]:
    """Who this session is, asked again at each call: a Claude Code session's SessionStart hook
    may record its id after the MCP server started, and `/clear` starts a new agent."""
    if explicit:
        return lambda: explicit
    claude = claude_state.claude_pid()  # None outside Claude Code

    def current() -> str:
        return claude_state.current_agent(os.environ, claude) or acting_agent(None)

    return current


# ----------------------------------------------------------------------------- arguments


def _int_arg(args: Json, name: str, *, required: bool = False) -> int | None:
    """An id that goes into a URL path: a positive integer, checked here (the relay would
    only see the path)."""
    value = args.get(name)
    if value is None:
        if required:
            raise ToolFailure(f"'{name}' is required", "invalid_request")
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ToolFailure(f"'{name}' must be an integer", "invalid_request")
    if value < 1 or value > 2**63 - 1:
        raise ToolFailure(f"'{name}' is out of range", "invalid_request")
    return value


def _pick(args: Json, *names: str) -> Json:
    return {name: args[name] for name in names if args.get(name) is not None}


def _key_header(args: Json) -> dict[str, str] | None:
    key = args.get("idempotencyKey")
    if key is None:
        return None
    if not isinstance(key, str) or not 1 <= len(key) <= 128:
        raise ToolFailure("'idempotencyKey' must be 1 to 128 characters", "invalid_request")
    return {"Idempotency-Key": key}


# ----------------------------------------------------------------------------- the tools


class SessionTools:
    """The tools for one agent, over the relay's HTTP API."""

    def __init__(self, agent: Callable[[], str], connect: Callable[..., ApiClient]) -> None:
        self.agent_of = agent
        self.connect = connect
        self.tools: dict[str, Callable[[str, Json], Json]] = {
            "relay_register": self.register,
            "relay_agents": self.agents,
            "relay_send": self.send,
            "relay_inbox": self.inbox,
            "relay_claim": self.claim,
            "relay_reply": self.reply,
            "relay_pair": self.pair,
            "relay_tasks": self.tasks,
            "relay_task_update": self.task_update,
        }

    async def call(self, spec: ToolSpec, arguments: Json, request: Any = None) -> Json:
        import anyio

        args = {k: v for k, v in arguments.items() if k != AGENT_ARG}
        try:
            tool = self.tools[spec.name]
            result: Json = await anyio.to_thread.run_sync(lambda: tool(self.agent_of(), args))
        except RelayError as exc:
            data = dict(exc.payload)
            sentence_ = str(data.pop("error", None) or exc.message)
            code = str(data.pop("code", None) or exc.error_code or "error")
            raise ToolFailure(sentence_, code, exc.status, data) from None
        except CliError as exc:  # relay down, unreachable, not configured
            raise ToolFailure(exc.message, "unavailable", 503) from None
        except ProviderEnvError as exc:
            raise ToolFailure(str(exc), "invalid_request") from None
        except ValueError as exc:  # e.g. a header http.client refuses to send
            raise ToolFailure(f"cannot send this request: {exc}", "invalid_request") from None
        return result

    def register(self, agent: str, args: Json) -> Json:
        body = identity_from_env().registration()
        body.setdefault("provider", DEFAULT_PROVIDER)
        body.update(args)
        body["id"] = agent
        registered: Json = self.connect().post("/agents", body)
        return registered

    def agents(self, agent: str, args: Json) -> Json:
        query = _pick(args, "tag", "capability", "machine", "status", "limit")
        listing: Json = self.connect().get("/agents", query)
        return listing

    def send(self, agent: str, args: Json) -> Json:
        headers = _key_header(args)
        body = {k: v for k, v in args.items() if k != "idempotencyKey"}
        body["from"] = agent
        message: Json = self.connect().post("/messages", body, headers=headers)
        return message

    def inbox(self, agent: str, args: Json) -> Json:
        wait = args.get("wait")
        timeout = 10.0 + (wait if isinstance(wait, int) and 0 < wait <= 60 else 0)
        client = self.connect(timeout)
        query = {
            "for": agent,
            "unread": args.get("unread", True),
            "limit": args.get("limit", INBOX_DEFAULT_LIMIT),
            **_pick(args, "since", "wait", "channel", "from", "thread"),
        }
        answer: Json = client.get("/messages", query)
        if args.get("markRead", True) is not False:
            answer["messages"] = [
                client.patch(f"/messages/{m['id']}", {"agent": agent, "read": True})
                if m.get("read") is False else m
                for m in answer.get("messages", [])
            ]
        return answer

    def claim(self, agent: str, args: Json) -> Json:
        message_id, task_id = _int_arg(args, "messageId"), _int_arg(args, "taskId")
        if (message_id is None) == (task_id is None):
            raise ToolFailure("give one of 'messageId' or 'taskId'", "invalid_request")
        path = f"/messages/{message_id}/claim" if message_id else f"/tasks/{task_id}/claim"
        claimed: Json = self.connect().post(path, {"agent": agent})
        return claimed

    def reply(self, agent: str, args: Json) -> Json:
        parent_id = _int_arg(args, "messageId", required=True)
        client = self.connect()
        parent = client.get(f"/messages/{parent_id}")
        body = {
            "from": agent,
            "to": parent.get("from"),
            "body": args.get("body"),
            "subject": args.get("subject") or parent.get("subject"),
            "replyTo": parent_id,
        }
        message: Json = client.post("/messages", {k: v for k, v in body.items()
                                                  if v is not None}, headers=_key_header(args))
        return message

    def pair(self, agent: str, args: Json) -> Json:
        action = args.get("action")
        if action is None:
            raise ToolFailure("'action' is required", "invalid_request")
        if action not in PAIR_ACTIONS:
            raise ToolFailure(f"'action' must be one of {', '.join(PAIR_ACTIONS)}",
                              "invalid_request")
        client = self.connect()
        result: Json
        if action == "invite":
            result = client.post("/pairs", {**_pick(args, "to", "objective"), "from": agent})
        elif action == "list":
            query = {"agent": agent, **_pick(args, "status", "limit")}
            result = client.get("/pairs", query)
        else:
            pair_id = _int_arg(args, "pairId", required=True)
            if action == "get":
                result = client.get(f"/pairs/{pair_id}")
            elif action == "send":
                result = client.post(f"/pairs/{pair_id}/messages",
                                     {"from": agent, "body": args.get("body")})
            else:
                result = client.post(f"/pairs/{pair_id}/{action}",
                                     {"agent": agent, **_pick(args, "reason")})
        return result

    def tasks(self, agent: str, args: Json) -> Json:
        client = self.connect()
        task_id = _int_arg(args, "taskId")
        if task_id is not None:
            task: Json = client.get(f"/tasks/{task_id}")
            history = client.get(f"/tasks/{task_id}/events")
            return {**task, "events": history.get("events", [])}
        listing: Json = client.get("/tasks", _pick(args, "status", "source", "target", "limit"))
        return listing

    def task_update(self, agent: str, args: Json) -> Json:
        task_id = _int_arg(args, "taskId", required=True)
        body: Json = {"agent": agent, **_pick(args, "status")}
        body.update({k: args[k] for k in ("progress", "result") if k in args})
        task: Json = self.connect().patch(f"/tasks/{task_id}/status", body)
        return task
