"""/api/pairs: pair sessions — invite, accept, reject, talk, hang up, list."""

from __future__ import annotations

from aiohttp import web

from relayd.daemon.context import Context
from relayd.domain.models import Pair
from relayd.domain.pairs import PAIR_STATUSES
from relayd.errors import invalid, not_found
from relayd.http.auth import Principal, principal_of, requires
from relayd.http.keys import context_of
from relayd.http.parsing import (
    Body,
    idempotency_key,
    path_int,
    query_agent_id,
    query_limit,
    query_text,
    read_json,
)
from relayd.http.responses import ok
from relayd.http.routes.messages import sent
from relayd.storage.base import SendResult

MAX_OBJECTIVE = 4096


@requires("pairs:write")
async def create(request: web.Request) -> web.Response:
    body = await read_json(request)
    pair, created = await create_from(context_of(request), principal_of(request), body,
                                      idempotency_key(request))
    return ok(pair.to_json(), 201 if created else 200)


async def create_from(ctx: Context, principal: Principal, body: Body, key: str | None
                      ) -> tuple[Pair, bool]:
    """Invite a partner on behalf of `principal` (POST /api/pairs and MCP: the one place its
    invite message is made, so provenance set here holds for both)."""
    initiator = body.required_agent_id("from")
    to = body.required_text("to", max_len=256)
    objective = body.text("objective", max_len=MAX_OBJECTIVE)
    return await ctx.store.create_pair(initiator, to, objective, key, principal.sent_by)


@requires("pairs:read")
async def list_pairs(request: web.Request) -> web.Response:
    agent = query_agent_id(request, "agent")
    limit = query_limit(request)
    pairs = await context_of(request).store.list_pairs(agent, _statuses(request), limit)
    return ok({"pairs": [p.to_json() for p in pairs]})


def _statuses(request: web.Request) -> list[str] | None:
    """`?status=pending` or a comma list `?status=pending,active`."""
    return statuses_from(query_text(request, "status", max_len=256))


def statuses_from(raw: str | None) -> list[str] | None:
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
    return ok((await act(context_of(request), pair_id, action, body, with_reason)).to_json())


async def act(ctx: Context, pair_id: int, action: str, body: Body, with_reason: bool) -> Pair:
    """accept / reject / hangup on behalf of body's `agent` (HTTP and MCP)."""
    agent = body.required_agent_id("agent")
    reason = body.text("reason", max_len=1024) if with_reason else None
    return await ctx.store.pair_action(pair_id, action, agent, reason)


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
    return sent(await send_in_pair(ctx, principal_of(request), pair_id, body,
                                   idempotency_key(request)))


async def send_in_pair(ctx: Context, principal: Principal, pair_id: int, body: Body,
                       key: str | None) -> SendResult:
    """A message from a participant to the other one, sent on behalf of `principal` (HTTP and
    MCP alike)."""
    sender = body.required_agent_id("from")
    text = body.text_up_to_bytes("body", ctx.settings.max_message_bytes, required=True)
    assert text is not None
    return await ctx.store.send_pair_message(pair_id, sender, text, key, principal.sent_by)
