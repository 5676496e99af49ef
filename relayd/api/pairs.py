"""/api/pairs: pair sessions — invite, accept, reject, talk, hang up, list."""

from __future__ import annotations

from aiohttp import web

from relayd.api.common import (
    idempotency_key,
    ok,
    path_int,
    query_agent_id,
    query_limit,
    query_text,
    read_json,
    requires,
)
from relayd.api.messages import sent
from relayd.context import context_of
from relayd.domain.pairs import PAIR_STATUSES
from relayd.errors import invalid, not_found

MAX_OBJECTIVE = 4096


@requires("pairs:write")
async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    initiator = body.required_agent_id("from")
    to = body.required_text("to", max_len=256)
    objective = body.text("objective", max_len=MAX_OBJECTIVE)
    key = idempotency_key(request)
    pair, created = await context_of(request).store.create_pair(initiator, to, objective, key)
    return ok(pair.to_json(), 201 if created else 200)


@requires("pairs:read")
async def list_pairs(request: web.Request) -> web.Response:
    agent = query_agent_id(request, "agent")
    limit = query_limit(request)
    pairs = await context_of(request).store.list_pairs(agent, _statuses(request), limit)
    return ok({"pairs": [p.to_json() for p in pairs]})


def _statuses(request: web.Request) -> list[str] | None:
    """`?status=pending` or a comma list `?status=pending,active`."""
    raw = query_text(request, "status", max_len=256)
    if raw is None or raw == "":
        return None
    statuses = [s.strip() for s in raw.split(",")]
    unknown = [s for s in statuses if s not in PAIR_STATUSES]
    if unknown:
        raise invalid(f"query parameter 'status' must be among {', '.join(PAIR_STATUSES)}")
    return statuses


@requires("pairs:read")
async def get(request: web.Request) -> web.Response:
    pair_id = path_int(request, "pair")
    pair = await context_of(request).store.get_pair(pair_id)
    if pair is None:
        raise not_found(f"pair {pair_id} does not exist")
    return ok(pair.to_json())


async def _act(request: web.Request, action: str, with_reason: bool) -> web.Response:
    pair_id = path_int(request, "pair")
    body = await read_json(request)
    agent = body.required_agent_id("agent")
    reason = body.text("reason", max_len=1024) if with_reason else None
    pair = await context_of(request).store.pair_action(pair_id, action, agent, reason)
    return ok(pair.to_json())


@requires("pairs:write")
async def accept(request: web.Request) -> web.Response:
    return await _act(request, "accept", with_reason=False)


@requires("pairs:write")
async def reject(request: web.Request) -> web.Response:
    return await _act(request, "reject", with_reason=True)


@requires("pairs:write")
async def hangup(request: web.Request) -> web.Response:
    return await _act(request, "hangup", with_reason=True)


@requires("pairs:write")
async def send_message(request: web.Request) -> web.Response:
    ctx = context_of(request)
    pair_id = path_int(request, "pair")
    body = await read_json(request)
    sender = body.required_agent_id("from")
    text = body.text_up_to_bytes("body", ctx.settings.max_message_bytes, required=True)
    assert text is not None
    return sent(await ctx.store.send_pair_message(pair_id, sender, text, idempotency_key(request)))
