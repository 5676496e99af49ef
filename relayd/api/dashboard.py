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
from importlib import resources
from typing import Any

from aiohttp import web

from relayd.api.stats import collect_stats
from relayd.auth import identify
from relayd.context import Context, context_of
from relayd.domain.tasks import TaskQuery
from relayd.storage.base import AgentFilter, MessageQuery

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
