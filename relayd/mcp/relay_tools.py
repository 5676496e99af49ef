"""The MCP tools inside relayd: each one validates its arguments with the API's own `Body`
readers and calls the same functions the HTTP handlers call (relayd/http/routes/*), so rules, errors
and provenance are the API's. A second transport beside relayd/http/, nothing more."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from relayd.daemon.context import Context
from relayd.domain.models import AGENT_STATUSES, Message
from relayd.domain.tasks import STATUSES as TASK_STATUSES
from relayd.domain.tasks import TaskQuery
from relayd.errors import ApiError, invalid, not_found
from relayd.http.auth import Principal, require_scope, unauthorized
from relayd.http.parsing import DEFAULT_LIMIT, MAX_LIMIT, Body, checked_idempotency_key
from relayd.http.routes import agents as agents_api
from relayd.http.routes import messages as messages_api
from relayd.http.routes import pairs as pairs_api
from relayd.http.routes import tasks as tasks_api
from relayd.mcp.specs import AGENT_ARG, INBOX_DEFAULT_LIMIT, PAIR_ACTIONS, ToolFailure, ToolSpec
from relayd.storage.base import AgentFilter, MessageQuery

PRINCIPAL_SCOPE_KEY = "agent_relay.principal"  # where the /mcp handler puts the caller

Json = dict[str, Any]
Tool = Callable[[Context, Principal, Body], Awaitable[Json]]


async def call(ctx: Context, spec: ToolSpec, arguments: Json, request: Any) -> Json:
    """Run one tool for the principal the /mcp handler authenticated; ToolFailure on refusal."""
    scope = getattr(request, "scope", None) or {}
    principal = scope.get(PRINCIPAL_SCOPE_KEY)
    try:
        if not isinstance(principal, Principal):
            raise unauthorized()  # fail closed: only the /mcp handler sets it
        return await TOOLS[spec.name](ctx, principal, Body(arguments))
    except ApiError as exc:
        raise ToolFailure(exc.message, exc.code, exc.status, exc.extra) from None


def _agent(body: Body) -> str:
    return body.required_agent_id(AGENT_ARG)


def _limit(body: Body, default: int = DEFAULT_LIMIT) -> int:
    limit = body.integer("limit", minimum=1, maximum=MAX_LIMIT)
    return default if limit is None else limit


def _required_int(body: Body, name: str) -> int:
    value = body.integer(name)
    if value is None:
        raise invalid(f"'{name}' is required")
    return value


def _api_body(body: Body, **fields: Any) -> Body:
    """The tool's arguments as the API request body: `agent` renamed, the rest as given."""
    data = {k: v for k, v in body.data.items() if k != AGENT_ARG}
    data.update(fields)
    return Body(data)


async def register(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "agents:write")
    agent, _ = await agents_api.register_from(ctx, _api_body(body, id=_agent(body)))
    return agent.to_json()


async def list_agents(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "agents:read")
    flt = AgentFilter(
        tag=body.text("tag"),
        machine=body.text("machine"),
        status=body.choice("status", AGENT_STATUSES),
        capability=body.text("capability"),
    )
    limit = _limit(body)
    agents = await ctx.store.list_agents(flt)
    return {"agents": [a.to_json() for a in agents[:limit]]}


async def send(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "messages:write")
    sender = _agent(body)
    key = checked_idempotency_key(body.data.get("idempotencyKey"), "idempotencyKey")
    draft = messages_api.draft_from(
        _api_body(body, **{"from": sender}), key, ctx.settings.max_message_bytes
    )
    return (await messages_api.submit(ctx, principal, draft)).payload()


async def inbox(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "messages:read")
    reader = _agent(body)
    mark_read = body.boolean("markRead", True)
    if mark_read:
        require_scope(principal, "messages:write")
    query = MessageQuery(
        reader=reader,
        unread=bool(body.boolean("unread", True)),
        since=body.integer("since", minimum=0),
        limit=_limit(body, INBOX_DEFAULT_LIMIT),
        channel=body.text("channel", max_len=128),
        sender=body.text("from", max_len=128),
        thread=body.integer("thread"),
    )
    wait = body.integer("wait", minimum=0, maximum=messages_api.MAX_WAIT_SECONDS) or 0
    messages, cursor = await messages_api.listing(ctx, query, wait)
    if mark_read:  # concurrently: the writer commits them as one batch
        messages = list(await asyncio.gather(*(
            ctx.store.set_read(m.id, reader, True) if m.read_at is None else _same(m)
            for m in messages
        )))
    return {"messages": [m.to_json() for m in messages], "cursor": cursor}


async def _same(message: Message) -> Message:
    return message


async def claim(ctx: Context, principal: Principal, body: Body) -> Json:
    agent = _agent(body)
    message_id, task_id = body.integer("messageId"), body.integer("taskId")
    if (message_id is None) == (task_id is None):
        raise invalid("give one of 'messageId' or 'taskId'")
    if message_id is not None:
        require_scope(principal, "messages:write")
        return (await ctx.store.claim_message(message_id, agent)).to_json()
    assert task_id is not None
    require_scope(principal, "tasks:write")
    return (await ctx.store.claim_task(task_id, agent)).to_json()


async def reply(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "messages:write")
    sender = _agent(body)
    parent_id = _required_int(body, "messageId")
    parent = await ctx.store.get_message(parent_id)
    if parent is None:
        raise not_found(f"message {parent_id} does not exist")
    subject = body.text("subject", max_len=1024) or parent.subject
    api_body = Body({"from": sender, "to": parent.sender, "body": body.data.get("body"),
                     "subject": subject, "replyTo": parent_id})
    key = checked_idempotency_key(body.data.get("idempotencyKey"), "idempotencyKey")
    draft = messages_api.draft_from(api_body, key, ctx.settings.max_message_bytes)
    return (await messages_api.submit(ctx, principal, draft)).payload()


async def pair(ctx: Context, principal: Principal, body: Body) -> Json:
    agent = _agent(body)
    action = body.choice("action", PAIR_ACTIONS, required=True)
    require_scope(principal, "pairs:read" if action in ("list", "get") else "pairs:write")
    if action == "invite":
        created, _ = await pairs_api.create_from(ctx, principal,
                                                 _api_body(body, **{"from": agent}), None)
        return created.to_json()
    if action == "list":
        statuses = pairs_api.statuses_from(body.text("status", max_len=256))
        pairs = await ctx.store.list_pairs(agent, statuses, _limit(body))
        return {"pairs": [p.to_json() for p in pairs]}
    pair_id = _required_int(body, "pairId")
    if action == "get":
        found = await ctx.store.get_pair(pair_id)
        if found is None:
            raise not_found(f"pair {pair_id} does not exist")
        return found.to_json()
    if action == "send":
        sent = await pairs_api.send_in_pair(ctx, principal, pair_id,
                                            _api_body(body, **{"from": agent}), None)
        return sent.payload()
    assert action is not None
    acted = await pairs_api.act(ctx, pair_id, action, _api_body(body, agent=agent),
                                with_reason=action != "accept")
    return acted.to_json()


async def list_tasks(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "tasks:read")
    task_id = body.integer("taskId")
    if task_id is not None:
        task = await ctx.store.get_task(task_id)
        history = await ctx.store.task_events(task_id)
        if task is None or history is None:
            raise not_found(f"task {task_id} does not exist")
        return {**task.to_json(), "events": [e.to_json() for e in history]}
    query = TaskQuery(
        status=body.choice("status", TASK_STATUSES),
        source=body.text("source", max_len=128),
        target=body.text("target", max_len=256),
        limit=_limit(body),
    )
    return {"tasks": [t.to_json() for t in await ctx.store.list_tasks(query)]}


async def update_task(ctx: Context, principal: Principal, body: Body) -> Json:
    require_scope(principal, "tasks:write")
    task_id = _required_int(body, "taskId")
    change = tasks_api.status_change(body)
    return (await ctx.store.change_task_status(task_id, change)).to_json()


TOOLS: dict[str, Tool] = {
    "relay_register": register,
    "relay_agents": list_agents,
    "relay_send": send,
    "relay_inbox": inbox,
    "relay_claim": claim,
    "relay_reply": reply,
    "relay_pair": pair,
    "relay_tasks": list_tasks,
    "relay_task_update": update_task,
}
