"""/api/messages: send, inbox and long-poll, cursor, threads, claims, read state, delete."""

from __future__ import annotations

import asyncio
import dataclasses

from aiohttp import web

from relayd.daemon.context import Context
from relayd.domain.models import Event, Message, iso
from relayd.domain.targets import TargetError, parse_target
from relayd.errors import invalid, not_found
from relayd.http.auth import Principal, check_allow_lists, principal_of, requires
from relayd.http.keys import context_of
from relayd.http.parsing import (
    Body,
    idempotency_key,
    page_of,
    path_int,
    query_bool,
    query_int,
    query_limit,
    query_text,
    read_json,
)
from relayd.http.responses import no_content, ok, paged
from relayd.storage.base import MessageDraft, MessageQuery, SendResult

MAX_WAIT_SECONDS = 60


def draft_from(body: Body, key: str | None, max_body_bytes: int,
               sent_by: str | None = None) -> MessageDraft:
    """A send's fields, validated (HTTP bodies and MCP tool arguments alike); `sent_by` saves
    submit() a copy of the draft when the caller already knows its principal."""
    sender = body.required_text("from", max_len=128)
    to = body.required_text("to", max_len=256)
    try:
        target = parse_target(to)
    except TargetError as exc:
        raise invalid(str(exc)) from None
    text = body.text_up_to_bytes("body", max_body_bytes, required=True)
    assert text is not None
    return MessageDraft(
        sender=sender,
        to=to,
        body=text,
        subject=body.text("subject", max_len=1024),
        channel=body.text("channel", max_len=128),
        reply_to=body.integer("replyTo"),
        claimable=bool(body.boolean("claimable", False)),
        meta=body.obj("meta") or {},
        idempotency_key=key,
        sent_by=sent_by,
        target=target,
    )


@requires("messages:write")
async def send(request: web.Request) -> web.Response:
    ctx = context_of(request)
    body = await read_json(request)
    principal = principal_of(request)
    draft = draft_from(body, idempotency_key(request), ctx.settings.max_message_bytes,
                       principal.sent_by)
    return sent(await submit(ctx, principal, draft))


async def submit(ctx: Context, principal: Principal, draft: MessageDraft) -> SendResult:
    """Send a message on behalf of `principal`: the one path for POST /api/messages and the
    MCP tools, so allow-lists and provenance apply to both."""
    integration = principal.integration
    if integration is not None:
        check_allow_lists(integration, draft.to, draft.channel)
    sent_by = principal.sent_by
    if draft.sent_by != sent_by:
        draft = dataclasses.replace(draft, sent_by=sent_by)
    return await ctx.store.send_message(draft)


def sent(result: SendResult) -> web.Response:
    """201 with the message and its recipients (200 for an Idempotency-Key replay), reusing
    the JSON the store already encoded for the message.new event when there is one."""
    status = 201 if result.created else 200
    if result.message_json is not None and result.recipients_json is not None:
        text = f'{result.message_json[:-1]},"recipients":{result.recipients_json}}}'
        return web.Response(status=status, text=text, content_type="application/json")
    return ok(result.payload(), status)


def _query(request: web.Request) -> tuple[MessageQuery, int]:
    order = query_text(request, "order")
    if order not in (None, "asc", "desc"):
        raise invalid("query parameter 'order' must be asc or desc")
    reader = query_text(request, "for", max_len=128)
    query = MessageQuery(
        reader=reader,
        unread=query_bool(request, "unread"),
        undelivered=query_bool(request, "undelivered"),
        since=query_int(request, "since", minimum=0),
        limit=query_limit(request),
        channel=query_text(request, "channel", max_len=128),
        sender=query_text(request, "from", max_len=128),
        thread=query_int(request, "thread", minimum=1),
        descending=order == "desc",
    )
    wait = query_int(request, "wait", default=0, minimum=0, maximum=MAX_WAIT_SECONDS) or 0
    return query, wait


@requires("messages:read")
async def list_messages(request: web.Request) -> web.Response:
    query, wait = _query(request)
    messages, cursor = await listing(context_of(request), query, wait)
    return ok({"messages": [m.to_json() for m in messages], "cursor": cursor})


async def listing(ctx: Context, query: MessageQuery, wait: int) -> tuple[list[Message], int]:
    """The messages matching `query` (long-polling up to `wait` s for one) and the cursor."""
    page = await ctx.store.inbox(query)  # one read for the usual poll
    if not page.registered:
        raise not_found(f"agent '{query.reader}' is not registered")
    messages, latest = page.messages, page.latest_id
    if not messages and wait:
        messages = await _long_poll(ctx, query, wait)
        latest = 0 if messages else await ctx.store.latest_message_id()
    cursor = max(m.id for m in messages) if messages else latest
    return messages, cursor


async def _long_poll(ctx: Context, query: MessageQuery, wait: int) -> list[Message]:
    """Wait for a matching message; subscribe first, then re-check, so none slips past."""

    def relevant(event: Event) -> bool:
        return event.type == "message.new" and event.visible_to(query.reader)

    subscription = ctx.bus.subscribe(relevant, maxsize=16)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    try:
        messages = await ctx.store.list_messages(query)
        while not messages and not subscription.closed and not ctx.stopping.is_set():
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await subscription.next_batch(remaining)
            subscription.reset_overflow()
            messages = await ctx.store.list_messages(query)
        return messages
    finally:
        ctx.bus.unsubscribe(subscription)


@requires("messages:read")
async def cursor(request: web.Request) -> web.Response:
    return ok({"cursor": await context_of(request).store.latest_message_id()})


@requires("messages:read")
async def get(request: web.Request) -> web.Response:
    message_id = path_int(request, "message")
    message = await context_of(request).store.get_message(message_id)
    if message is None:
        raise not_found(f"message {message_id} does not exist")
    return ok(message.to_json())


@requires("messages:read")
async def thread(request: web.Request) -> web.Response:
    message_id = path_int(request, "message")
    store = context_of(request).store
    messages = await store.thread(message_id)
    if messages is None:
        raise not_found(f"message {message_id} does not exist")
    since = query_int(request, "since", minimum=0)
    chunk, following = page_of(request, messages, lambda m: m.id, since)
    deliveries = await store.message_deliveries([m.id for m in chunk])
    return paged({"messages": [
        {**m.to_json(), "deliveries": [
            {"agent": agent, "read": read_at is not None, "readAt": iso(read_at)}
            for agent, read_at in deliveries.get(m.id, [])
        ]}
        for m in chunk
    ]}, following)


@requires("messages:write")
async def claim(request: web.Request) -> web.Response:
    message_id = path_int(request, "message")
    body = await read_json(request)
    agent_id = body.required_agent_id("agent")
    message = await context_of(request).store.claim_message(message_id, agent_id)
    return ok(message.to_json())


@requires("messages:write")
async def mark(request: web.Request) -> web.Response:
    message_id = path_int(request, "message")
    body = await read_json(request)
    agent_id = body.required_agent_id("agent")
    read = body.boolean("read")
    delivered = body.boolean("delivered")
    if read is None and delivered is None:
        raise invalid("'read' or 'delivered' is required (true or false)")
    store = context_of(request).store
    if delivered is not None:
        message = await store.set_delivered(message_id, agent_id, delivered)
    if read is not None:
        message = await store.set_read(message_id, agent_id, read)
    return ok(message.to_json())


@requires("messages:write")
async def delete(request: web.Request) -> web.Response:
    message_id = path_int(request, "message")
    if not await context_of(request).store.delete_message(message_id):
        raise not_found(f"message {message_id} does not exist")
    return no_content()
