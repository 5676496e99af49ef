"""/api/events: the SSE stream (the framing and replay live in relayd.http.sse)."""

from __future__ import annotations

from aiohttp import web

from relayd.http.auth import requires
from relayd.http.keys import context_of
from relayd.http.parsing import query_agent_id
from relayd.http.sse import open_stream


@requires("events:read")
async def stream(request: web.Request) -> web.StreamResponse:
    reader = query_agent_id(request, "for")
    return await open_stream(request, context_of(request), reader)
