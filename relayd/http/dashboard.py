"""The dashboard page at `/`, with its first data embedded when the caller may see it.

The page is static apart from one JSON data block (`<script type="application/json">`, which a
browser never executes, so the policy stays `script-src 'self'`). When the relay answers `/api`
without a token (a token-less loopback relay), the block holds the first snapshot: agents,
latest messages, tasks, pairs, stats, channels and the event id it was taken at, so the page
draws at once and follows `/api/events` from there. With a token, a page load carries no
credentials, so the block is `null` and the page asks for the token first.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

from aiohttp import web

from relayd.daemon.context import Context
from relayd.daemon.stats import collect_stats
from relayd.domain.tasks import TaskQuery
from relayd.http.auth import identify
from relayd.http.keys import context_of
from relayd.storage.base import AgentFilter, MessageQuery

log = logging.getLogger("relayd.http")
MARKER = "<!--BOOTSTRAP-->"
FEED_LIMIT = 200
TABLE_LIMIT = 100
AGENT_LIMIT = 1000
# Inside a script element only "</script" (and "<!--") could end the block early: with every
# <, > and & written as JSON escapes, no text a message carries can.
_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                          "\u2028": "\\u2028", "\u2029": "\\u2029"})


def page_template() -> str:
    return resources.files("relayd").joinpath("static/index.html").read_text(encoding="utf-8")


async def snapshot(ctx: Context) -> dict[str, Any]:
    """What the page shows first. The event id is read first: anything that happens while the
    rest is read is replayed to the page (events are idempotent for it), never missed."""
    event_id = await ctx.store.latest_event_id()
    agents = await ctx.store.list_agents(AgentFilter())
    messages = await ctx.store.list_messages(MessageQuery(limit=FEED_LIMIT, descending=True))
    tasks = await ctx.store.list_tasks(TaskQuery(limit=TABLE_LIMIT))
    pairs = await ctx.store.list_pairs(None, None, TABLE_LIMIT)
    channels = [{"kind": "bridge", **channel.state()} for channel in ctx.channels]
    channels += [{"name": entry["name"], "kind": "message", "messages": entry["messages"],
                  "subscribers": entry["subscribers"]}
                 for entry in await ctx.store.channel_usage()]
    return {
        "eventId": event_id,
        "agents": [agent.to_json() for agent in agents[:AGENT_LIMIT]],
        "messages": [message.to_json() for message in messages],
        "tasks": [task.to_json() for task in tasks],
        "pairs": [pair.to_json() for pair in pairs],
        "stats": await collect_stats(ctx),
        "channels": channels,
    }


def embed(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"), default=str).translate(_ESCAPES)


async def render(request: web.Request) -> str:
    ctx = context_of(request)
    data: Any = None
    if identify(ctx.settings, None) is not None:  # /api would answer this caller tokenless
        data = await snapshot(ctx)
    return page_template().replace(MARKER, embed(data), 1)


# Scripts and styles come only from /static/ files: no inline code, so the policy can stay strict.
DASHBOARD_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; object-src 'none'; "
    "frame-ancestors 'none'"
)
STATIC_TYPES = {".js": "text/javascript", ".css": "text/css"}


def _static_headers(cache: str) -> dict[str, str]:
    return {
        "Cache-Control": cache,
        "Content-Security-Policy": DASHBOARD_CSP,
        "Referrer-Policy": "no-referrer",
        "X-Content-Type-Options": "nosniff",
    }


async def page(request: web.Request) -> web.Response:
    """The page, with its first data embedded when the caller may see it ."""
    try:
        page = await render(request)
    except Exception as exc:  # storage trouble: the page still loads, and fetches instead
        log.warning("dashboard snapshot failed: %s", exc)
        page = page_template().replace(MARKER, "null", 1)
    return web.Response(text=page, content_type="text/html", headers=_static_headers("no-store"))


async def static_asset(request: web.Request) -> web.Response:
    """The dashboard's own .js/.css files; plain names only, so no path can escape static/."""
    name = request.match_info["name"]
    content_type = STATIC_TYPES.get(PurePosixPath(name).suffix)
    asset = resources.files("relayd").joinpath("static", name)
    if content_type is None or "/" in name or name.startswith(".") or not asset.is_file():
        raise web.HTTPNotFound()  # the error middleware answers the contract's JSON 404
    return web.Response(
        text=asset.read_text(encoding="utf-8"),
        content_type=content_type,
        charset="utf-8",
        headers=_static_headers("no-cache"),
    )
