"""What a web page must not do to a relay: the Host check (DNS rebinding), the Origin and
Sec-Fetch-Site check (cross-site requests, whatever the method) and JSON-only bodies (a
cross-site form can post text/plain, form-encoded or multipart without a preflight).

The rules are data (`BrowserPolicy`, built once per Settings) and plain functions of header
values, so the middleware in relayd/http/middleware.py pays a few set look-ups per request.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from relayd.config.settings import Settings
from relayd.errors import ApiError, forbidden

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")
BODY_METHODS = frozenset({"POST", "PATCH", "PUT"})


@dataclass(frozen=True)
class BrowserPolicy:
    check_host: bool  # only a token-less relay trusts "whoever reaches it"
    names: frozenset[str]  # allowed Host names, any port (lowercase, IPv6 in brackets)
    names_with_port: frozenset[str]  # allowed "name:port" pairs
    origins: frozenset[str]  # AGENT_RELAY_CORS_ORIGINS, lowercase, no trailing slash
    any_origin: bool


class PolicyCache:
    """The rules of the settings in force, rebuilt only when a reload replaces them."""

    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._policy: BrowserPolicy | None = None

    def current(self, settings: Settings) -> BrowserPolicy:
        if self._policy is None or settings is not self._settings:
            self._settings, self._policy = settings, policy_for(settings)
        return self._policy


def policy_for(settings: Settings) -> BrowserPolicy:
    names = set(LOOPBACK_NAMES)
    names.add(_bracketed(settings.host.lower()))
    with_port: set[str] = set()
    for entry in settings.allowed_hosts:
        name, port = split_host(entry.lower())
        (with_port.add(f"{name}:{port}") if port else names.add(name))
    return BrowserPolicy(
        check_host=settings.token is None,
        names=frozenset(names),
        names_with_port=frozenset(with_port),
        origins=frozenset(o.lower() for o in settings.cors_origins if o != "*"),
        any_origin="*" in settings.cors_origins,
    )


def split_host(host: str) -> tuple[str, str]:
    """`name:port` → (name, port); IPv6 keeps its brackets; no port → ''."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return host, ""
        return host[: end + 1], host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
    name, sep, port = host.rpartition(":")
    if not sep or ":" in name:  # no port, or a bare IPv6 address
        return host.rstrip("."), ""
    return name.rstrip("."), port


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _is_loopback_ip(name: str) -> bool:
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(
    policy: BrowserPolicy, host: str | None, local_address: Callable[[], str | None]
) -> None:
    """403 unless the Host names this relay: a DNS-rebound page sends its own name."""
    if not policy.check_host or host is None:  # no Host at all is no browser
        return
    name, port = split_host(host.lower())
    if name in policy.names or f"{name}:{port}" in policy.names_with_port:
        return
    if name.startswith(("127.", "[")) and _is_loopback_ip(name):
        return
    local = local_address()
    if local is not None and name == _bracketed(local.lower()):
        return  # the address this connection arrived on, e.g. a tailnet IP of 0.0.0.0
    raise forbidden(
        f"Host '{host}' is not this relay: browse it as localhost or 127.0.0.1, or list the"
        " name in AGENT_RELAY_ALLOWED_HOSTS"
    )


def check_origin(
    policy: BrowserPolicy, origin: str | None, fetch_site: str | None, host: str | None
) -> None:
    """403 for a request a page on another site made, whatever the method: a listed origin
    (AGENT_RELAY_CORS_ORIGINS) or the relay's own origin may call it."""
    if origin is not None:
        wanted = origin.strip().lower().rstrip("/")
        if policy.any_origin or wanted in policy.origins:
            return
        if host is not None and wanted in (f"http://{host.lower()}", f"https://{host.lower()}"):
            return
        raise forbidden(
            f"requests from the web page origin '{origin}' are refused"
            " (list it in AGENT_RELAY_CORS_ORIGINS to allow it)"
        )
    if fetch_site is not None and fetch_site.lower() == "cross-site" and not policy.any_origin:
        raise forbidden(
            "cross-site requests are refused (Sec-Fetch-Site: cross-site); open the relay's"
            " own address instead"
        )


def check_json_body(method: str, content_type: str | None, has_body: bool) -> None:
    """415 unless a POST/PATCH body says it is JSON: the simple types a cross-site form sends
    without a preflight (text/plain, form-encoded, multipart) never reach a handler."""
    if method not in BODY_METHODS or not has_body:
        return
    media = (content_type or "").partition(";")[0].strip().lower()
    if media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    ):
        return
    got = f"'{media}'" if media else "none"
    raise ApiError(
        415,
        "unsupported_media_type",
        f"request bodies must be JSON: send the header Content-Type: application/json"
        f" (got {got})",
    )
