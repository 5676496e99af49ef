"""/api/integrations/events (the ingress), /api/integrations and /api/channels."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

from aiohttp import web

from relayd.config.settings import Integration
from relayd.daemon.context import Context
from relayd.domain.models import iso
from relayd.domain.targets import TargetError, parse_target
from relayd.domain.tasks import IngressEvent
from relayd.errors import ApiError, forbidden, invalid
from relayd.http.auth import Principal, check_allow_lists, principal_of, requires
from relayd.http.keys import INGRESS_LIMITER, context_of
from relayd.http.parsing import Body, idempotency_key, read_json
from relayd.http.ratelimit import retry_after_header
from relayd.http.responses import ok

INGRESS_SCOPES = ("tasks:create", "events:create", "tasks:write")
ADMIN_SOURCE = "admin"


# ---------------------------------------------------------------------------- ingress


@requires(INGRESS_SCOPES)
async def post_event(request: web.Request) -> web.Response:
    ctx = context_of(request)
    principal = principal_of(request)
    integration = principal.integration  # identified against the live settings
    if integration is not None:
        _rate_limit(request, ctx, integration.name)
    body = await read_json(request)
    event = parse_event(body, request, ctx, principal, integration)
    if integration is not None:
        check_allow_lists(integration, event.target, event.channel)
    result = await ctx.store.ingest_event(event)
    payload = {"task": result.task.to_json(), "deduped": result.deduped}
    if result.replayed:
        payload["replayed"] = True
    return ok(payload, 201 if result.outcome == "created" and not result.replayed else 200)


def _rate_limit(request: web.Request, ctx: Context, name: str) -> None:
    wait = request.app[INGRESS_LIMITER].admit(name, ctx.settings.integration_rate_limit_per_minute)
    if wait is not None:
        raise ApiError(
            429,
            "rate_limited",
            f"integration '{name}' is over {ctx.settings.integration_rate_limit_per_minute}"
            " events per minute",
            headers={"Retry-After": retry_after_header(wait)},
        )


def parse_event(
    body: Body,
    request: web.Request,
    ctx: Context,
    principal: Principal,
    integration: Integration | None,
) -> IngressEvent:
    status = body.text("status", max_len=32)
    resolves = status == "resolved"
    dedupe_key = body.text("dedupeKey", max_len=256)
    if resolves and dedupe_key is None:
        raise invalid("'dedupeKey' is required with \"status\": \"resolved\"")
    target = body.text("target", required=not resolves, max_len=256)
    if target is not None:
        try:
            parse_target(target)
        except TargetError as exc:
            raise invalid(str(exc).replace("'to'", "'target'")) from None
    text = body.text_up_to_bytes("body", ctx.settings.max_message_bytes, required=False)
    source = _source(body, principal, integration)
    callback_of = integration or ctx.settings.integration_named(source)
    return IngressEvent(
        source=source,
        type=body.required_text("type", max_len=128),
        title=body.text("title", required=not resolves, max_len=1024),
        target=target,
        body=text,
        severity=body.text("severity", max_len=64),
        dedupe_key=dedupe_key,
        channel=body.text("channel", max_len=128),
        status=status,
        meta=body.obj("meta") or {},
        idempotency_key=idempotency_key(request),
        callbacks=bool(callback_of and callback_of.callback_url),
        sent_by=principal.sent_by,
    )


def _source(body: Body, principal: Principal, integration: Integration | None) -> str:
    """An integration posts as itself; the admin as `source` (default "admin")."""
    claimed = body.text("source", max_len=128)
    if integration is None:
        return claimed or ADMIN_SOURCE
    if claimed is not None and claimed != integration.name:
        raise forbidden(f"this token posts as '{integration.name}', not as '{claimed}'")
    return integration.name


# ---------------------------------------------------------------------------- listings


@requires("stats:read")
async def list_integrations(request: web.Request) -> web.Response:
    ctx = context_of(request)
    seen = await ctx.store.integrations_seen()
    deliveries = await ctx.store.callback_summary()
    entries = [
        _integration_json(i.name, i, seen.get(i.name), deliveries.get(i.name))
        for i in ctx.settings.integrations
    ]
    configured = {i.name for i in ctx.settings.integrations}
    entries += [
        _integration_json(name, None, seen[name], deliveries.get(name))
        for name in sorted(seen)
        if name not in configured
    ]
    return ok({"integrations": entries})


def _integration_json(
    name: str,
    integration: Integration | None,
    seen: dict[str, Any] | None,
    deliveries: dict[str, Any] | None,
) -> dict[str, Any]:
    seen = seen or {}
    url = integration.callback_url if integration else None
    return {
        "name": name,
        "configured": integration is not None,
        "scopes": sorted(integration.scopes) if integration else [],
        "targets": _allow_list(integration.targets if integration else None),
        "channels": _allow_list(integration.channels if integration else None),
        "observed": {
            "firstEventAt": iso(seen.get("first_event_at")),
            "lastEventAt": iso(seen.get("last_event_at")),
            "events": seen.get("events", 0),
            "tasksCreated": seen.get("tasks_created", 0),
            "occurrences": seen.get("occurrences", 0),
            "resolved": seen.get("resolved", 0),
        },
        "callback": {
            "url": _redacted(url),
            "signed": bool(integration and integration.callback_secret),
            "pending": (deliveries or {}).get("pending", 0),
            "delivered": (deliveries or {}).get("delivered", 0),
            "dead": (deliveries or {}).get("dead", 0),
            "failedAttempts": seen.get("callbacks_failed", 0),
            "lastStatus": seen.get("last_callback_status"),
            "lastAt": iso(seen.get("last_callback_at")),
            "lastError": seen.get("last_callback_error"),
            "deadDeliveries": (deliveries or {}).get("deadDeliveries", []),
        },
    }


def _allow_list(allowed: tuple[str, ...] | None) -> list[str] | None:
    """None: anything is allowed; [] (configured empty): nothing is."""
    return None if allowed is None else list(allowed)


def _redacted(url: str | None) -> str | None:
    """Callback URLs may carry credentials: drop user info and the query string."""
    if url is None:
        return None
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@requires("channels:read")
async def list_channels(request: web.Request) -> web.Response:
    """Communication channels: bridges (Telegram first) and the message channels in use."""
    ctx = context_of(request)
    bridges = [{"kind": "bridge", **channel.state()} for channel in ctx.channels]
    used = [
        {
            "name": entry["name"],
            "kind": "message",
            "configured": True,
            "state": "active" if entry["messages"] else "subscribed",
            "messages": entry["messages"],
            "subscribers": entry["subscribers"],
            "lastMessageAt": iso(entry["lastMessageAt"]),
        }
        for entry in await ctx.store.channel_usage()
    ]
    return ok({"channels": [*bridges, *used]})
