"""/api/agents: register, list, find, heartbeat, update, remove."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from relayd.daemon.context import Context
from relayd.domain.models import AGENT_STATUSES, APPROVALS, Agent
from relayd.domain.sessions import SessionGuard
from relayd.errors import invalid, not_found
from relayd.http.auth import requires
from relayd.http.keys import context_of
from relayd.http.parsing import (
    Body,
    page_of,
    path_agent_id,
    query_text,
    read_json,
    read_optional_json,
)
from relayd.http.responses import no_content, ok, paged
from relayd.storage.base import AgentFilter

EDITABLE = ("label", "tags", "capabilities", "channels", "status", "approval", "meta")


def agent_fields(body: Body, *, include_identity: bool) -> dict[str, Any]:
    """The agent fields present in a request body, validated."""
    fields: dict[str, Any] = {}
    readers: dict[str, Any] = {
        "label": lambda: body.text("label", max_len=256),
        "tags": lambda: body.string_list("tags"),
        "capabilities": lambda: body.string_list("capabilities"),
        "channels": lambda: body.string_list("channels"),
        "status": lambda: body.choice("status", AGENT_STATUSES),
        "approval": lambda: body.choice("approval", APPROVALS),
        "meta": lambda: body.obj("meta"),
    }
    if include_identity:
        for name in ("machine", "project", "provider", "version"):
            readers[name] = lambda name=name: body.text(name, max_len=256)
    for name, read in readers.items():
        value = read()
        if value is not None:
            fields[name] = value
    return fields


def session_guard(body: Body) -> SessionGuard | None:
    """`instanceId` + `epoch` from a heartbeat or update: both or neither."""
    instance_id = body.text("instanceId", max_len=128)
    epoch = body.integer("epoch")
    if instance_id is None and epoch is None:
        return None
    if instance_id is None or epoch is None:
        raise invalid("'instanceId' and 'epoch' go together: give both or neither")
    return SessionGuard(instance_id, epoch)


def _json(agent: Agent, status: int = 200) -> web.Response:
    return ok(agent.to_json(), status)


@requires("agents:write")
async def register(request: web.Request) -> web.Response:
    agent, created = await register_from(context_of(request), await read_json(request))
    return _json(agent, 201 if created else 200)


async def register_from(ctx: Context, body: Body) -> tuple[Agent, bool]:
    """Register or update the agent a body describes (POST /api/agents and MCP)."""
    fields = agent_fields(body, include_identity=True)
    fields["id"] = body.required_agent_id("id")
    instance_id = body.text("instanceId", max_len=128)
    if instance_id is not None:
        fields["instance_id"] = instance_id
    return await ctx.store.register_agent(fields)


def _filter(request: web.Request, exclude_offline: bool = False) -> AgentFilter:
    status = query_text(request, "status")
    if status is not None and status not in AGENT_STATUSES:
        raise invalid(f"query parameter 'status' must be one of {', '.join(AGENT_STATUSES)}")
    return AgentFilter(
        tag=query_text(request, "tag"),
        machine=query_text(request, "machine"),
        status=status,
        capability=query_text(request, "capability"),
        exclude_offline=exclude_offline,
    )


def _listing(request: web.Request, agents: list[Agent]) -> web.Response:
    """`{agents, next}`: at most `?limit=` (1-1000, default 100) agents in id order, after
    `?after=<id>`; `next` is the `after` of the following page, absent on the last one."""
    after = query_text(request, "after", max_len=128)
    chunk, following = page_of(request, agents, lambda a: a.id, after)
    return paged({"agents": [a.to_json() for a in chunk]}, following)


@requires("agents:read")
async def list_agents(request: web.Request) -> web.Response:
    agents = await context_of(request).store.list_agents(_filter(request))
    return _listing(request, agents)


@requires("agents:read")
async def find(request: web.Request) -> web.Response:
    if not request.query.get("capability"):
        raise invalid("query parameter 'capability' is required")
    agents = await context_of(request).store.list_agents(_filter(request, exclude_offline=True))
    return _listing(request, agents)


@requires("agents:read")
async def get(request: web.Request) -> web.Response:
    agent_id = path_agent_id(request)
    agent = await context_of(request).store.get_agent(agent_id)
    if agent is None:
        raise not_found(f"agent '{agent_id}' is not registered")
    return _json(agent)


@requires("agents:write")
async def heartbeat(request: web.Request) -> web.Response:
    agent_id = path_agent_id(request)
    body = await read_optional_json(request)
    status = body.choice("status", AGENT_STATUSES)
    guard = session_guard(body)
    agent = await context_of(request).store.heartbeat(agent_id, status, guard)
    if agent is None:
        raise not_found(f"agent '{agent_id}' is not registered; register it again")
    return _json(agent)


@requires("agents:write")
async def set_label(request: web.Request) -> web.Response:
    agent_id = path_agent_id(request)
    body = await read_json(request)
    label = body.text("label", required=True, max_len=256)
    return await _update(request, agent_id, {"label": label})


@requires("agents:write")
async def patch(request: web.Request) -> web.Response:
    agent_id = path_agent_id(request)
    body = await read_json(request)
    changes = agent_fields(body, include_identity=False)
    guard = session_guard(body)
    if not changes:
        raise invalid(f"nothing to change: give any of {', '.join(EDITABLE)}")
    return await _update(request, agent_id, changes, guard)


async def _update(request: web.Request, agent_id: str, changes: dict[str, Any],
                  guard: SessionGuard | None = None) -> web.Response:
    agent = await context_of(request).store.update_agent(agent_id, changes, guard)
    if agent is None:
        raise not_found(f"agent '{agent_id}' is not registered")
    return _json(agent)


@requires("agents:write")
async def delete(request: web.Request) -> web.Response:
    agent_id = path_agent_id(request)
    if not await context_of(request).store.delete_agent(agent_id):
        raise not_found(f"agent '{agent_id}' is not registered")
    return no_content()
