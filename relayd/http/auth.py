"""Who is calling: the admin token, scoped integration tokens, and the middleware that checks
each handler's declared scope."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from aiohttp import web

from relayd.config.settings import Integration, Settings, same_secret
from relayd.errors import ApiError, forbidden
from relayd.http.errors import Handler
from relayd.http.keys import context_of

ADMIN_SCOPES = frozenset({"*"})


@dataclass(frozen=True)
class Principal:
    name: str
    scopes: frozenset[str]
    integration: Integration | None = None

    @property
    def sent_by(self) -> str:
        """Provenance recorded on what this caller sends: admin, integration:<name>, local."""
        return f"integration:{self.name}" if self.integration is not None else self.name

    def allows(self, scope: str | tuple[str, ...] | None) -> bool:
        if scope is None or "*" in self.scopes:
            return True
        wanted = (scope,) if isinstance(scope, str) else scope
        return any(s in self.scopes for s in wanted)


ANONYMOUS = Principal("local", ADMIN_SCOPES)
PRINCIPAL = web.RequestKey("principal", Principal)


def presented_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.headers.get("X-Agent-Relay-Token") or None


def identify(settings: Settings, token: str | None) -> Principal | None:
    """The caller, or None when a token is required and this one is missing or wrong."""
    if token is not None:
        if settings.token and same_secret(token, settings.token):
            return Principal("admin", ADMIN_SCOPES)
        integration = settings.integration_for_token(token)
        if integration is not None:
            return Principal(integration.name, integration.scopes, integration)
    if settings.token is None:
        return ANONYMOUS
    return None


def unauthorized() -> ApiError:
    return ApiError(
        401,
        "unauthorized",
        "a valid token is required: send Authorization: Bearer <token>"
        " (on the relay's machine, `relayctl token show` prints it)",
        headers={"WWW-Authenticate": 'Bearer realm="agent-relay"'},
    )


MCP_PATH = "/mcp"
AUTHORIZED_PATHS = (MCP_PATH, "/metrics")  # outside /api/, with the API's auth


def authorize(request: web.Request) -> None:
    """Identify the caller of an /api/ or /mcp request (or /metrics, the same handler as
    /api/metrics) and check the handler's declared scope (each MCP tool checks its own scope
    with `require_scope`)."""
    path = request.path
    if not (path.startswith("/api/") or path in AUTHORIZED_PATHS) or request.method == "OPTIONS":
        return
    settings = context_of(request).settings
    if settings.token is None and not settings.integrations:  # every caller is local
        principal: Principal | None = ANONYMOUS
    else:
        principal = identify(settings, presented_token(request))
    if principal is None:
        raise unauthorized()
    require_scope(principal, getattr(request.match_info.handler, "scope", None))
    request[PRINCIPAL] = principal


def require_scope(principal: Principal, scope: str | tuple[str, ...] | None) -> None:
    if not principal.allows(scope):
        raise forbidden(f"this token lacks the scope {_describe(scope)}")


def check_allow_lists(integration: Integration, target: str | None, channel: str | None) -> None:
    """An integration with `targets`/`channels` allow-lists posts only within them (403), on
    the event ingress as on POST /messages, where `messages:write` would otherwise get round
    them. Entries are exact values or shell-style patterns (`tag:oncall-*`); no channel is
    always allowed."""
    if target is not None and not _listed(target, integration.targets):
        raise forbidden(f"integration '{integration.name}' may not post to '{target}'")
    if channel is not None and not _listed(channel, integration.channels):
        raise forbidden(f"integration '{integration.name}' may not post on channel '{channel}'")


def _listed(value: str, allowed: tuple[str, ...] | None) -> bool:
    return allowed is None or any(fnmatchcase(value, pattern) for pattern in allowed)


def principal_of(request: web.Request) -> Principal:
    principal: Principal = request.get(PRINCIPAL, ANONYMOUS)
    return principal


def _describe(scope: str | tuple[str, ...] | None) -> str:
    return scope if isinstance(scope, str) else " or ".join(scope or ())


def requires(scope: str | tuple[str, ...] | None) -> Callable[[Handler], Handler]:
    """Declare the token scope(s) a handler needs; the auth middleware enforces it."""

    def mark(handler: Handler) -> Handler:
        handler.scope = scope  # type: ignore[attr-defined]
        return handler

    return mark
