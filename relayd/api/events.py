"""/api/events: the SSE stream (the framing and replay live in relayd.sse)."""

from __future__ import annotations

from aiohttp import web

from relayd.api.common import query_text, requires
from relayd.context import context_of
from relayd.domain.targets import AGENT_ID_RE
from relayd.errors import invalid
from relayd.sse import open_stream


@requires("events:read")
async def stream(request: web.Request) -> web.StreamResponse:
    reader = query_text(request, "for", max_len=128)
    if reader is not None and not AGENT_ID_RE.match(reader):
        raise invalid("query parameter 'for' must be an agent id")
    return await open_stream(request, context_of(request), reader)
