"""/api/events: the SSE stream (the framing and replay live in relayd.sse)."""

from __future__ import annotations

from aiohttp import web

from relayd.api.common import query_agent_id, requires
from relayd.context import context_of
from relayd.sse import open_stream


@requires("events:read")
async def stream(request: web.Request) -> web.StreamResponse:
    reader = query_agent_id(request, "for")
    return await open_stream(request, context_of(request), reader)
