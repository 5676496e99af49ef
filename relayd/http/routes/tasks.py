"""/api/tasks: list, get, history, claim, status updates."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from relayd.domain.tasks import STATUSES, StatusChange, TaskQuery
from relayd.errors import invalid, not_found
from relayd.http.auth import requires
from relayd.http.keys import context_of
from relayd.http.parsing import (
    Body,
    clean_json,
    page_of,
    path_int,
    query_int,
    query_limit,
    query_text,
    read_json,
)
from relayd.http.responses import ok, paged

MAX_REPORT_BYTES = 16 * 1024


@requires("tasks:read")
async def list_tasks(request: web.Request) -> web.Response:
    status = query_text(request, "status", max_len=32) or None  # empty: not given
    if status is not None and status not in STATUSES:
        raise invalid(f"query parameter 'status' must be one of {', '.join(STATUSES)}")
    query = TaskQuery(
        status=status,
        source=query_text(request, "source", max_len=128) or None,
        target=query_text(request, "target", max_len=256) or None,
        limit=query_limit(request),
    )
    tasks = await context_of(request).store.list_tasks(query)
    return ok({"tasks": [t.to_json() for t in tasks]})


@requires("tasks:read")
async def get(request: web.Request) -> web.Response:
    task_id = path_int(request, "task")
    task = await context_of(request).store.get_task(task_id)
    if task is None:
        raise not_found(f"task {task_id} does not exist")
    return ok(task.to_json())


@requires("tasks:read")
async def events(request: web.Request) -> web.Response:
    task_id = path_int(request, "task")
    history = await context_of(request).store.task_events(task_id)
    if history is None:
        raise not_found(f"task {task_id} does not exist")
    since = query_int(request, "since", minimum=0)
    chunk, following = page_of(request, history, lambda e: e.id, since)
    return paged({"events": [e.to_json() for e in chunk]}, following)


@requires("tasks:write")
async def claim(request: web.Request) -> web.Response:
    task_id = path_int(request, "task")
    body = await read_json(request)
    agent_id = body.required_agent_id("agent")
    task = await context_of(request).store.claim_task(task_id, agent_id)
    return ok(task.to_json())


@requires("tasks:write")
async def set_status(request: web.Request) -> web.Response:
    task_id = path_int(request, "task")
    body = await read_json(request)
    task = await context_of(request).store.change_task_status(task_id, status_change(body))
    return ok(task.to_json())


def status_change(body: Body) -> StatusChange:
    """A task status update's fields, validated (HTTP and MCP)."""
    return StatusChange(
        agent=body.required_agent_id("agent"),
        status=body.choice("status", STATUSES, required=True) or "",
        progress=_report(body, "progress"),
        result=_report(body, "result"),
        has_progress=body.has("progress"),
        has_result=body.has("result"),
    )


def _report(body: Body, name: str) -> Any:
    """progress / result: any JSON value (a number, a sentence, an object) up to 16 KiB."""
    value = clean_json(body.data.get(name), name)
    if len(json.dumps(value)) > MAX_REPORT_BYTES:
        raise invalid(f"'{name}' is larger than 16 KiB")
    return value
