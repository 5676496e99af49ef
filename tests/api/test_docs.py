"""docs/api.md stays honest: every served API route is described there, and nothing else is.

Notation in docs/api.md: `METHOD /api/path/:param`, in backticks.
"""

from __future__ import annotations

import re
from pathlib import Path

from relayd.daemon.relay import Relay
from relayd.http.openapi.document import served_routes

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "api.md"
MENTION_RE = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/api/[^`\s?]*)`")
PLACEHOLDER_RE = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def doc_notation(method: str, path: str) -> str:
    """`patch`, `/api/messages/{id:\\d+}` → `PATCH /api/messages/:id`."""
    return method.upper() + " " + PLACEHOLDER_RE.sub(r":\1", path)


def mentioned() -> set[str]:
    return {f"{method} {path}" for method, path in MENTION_RE.findall(API_DOC.read_text())}


def served(relay: Relay) -> set[str]:
    assert relay.http.runner is not None
    return {
        doc_notation(method, "/api" + path)
        for method, path, _ in served_routes(relay.http.runner.app)
    }


def test_the_notation_matches_router_paths() -> None:
    assert doc_notation("patch", r"/api/messages/{id:\d+}") == "PATCH /api/messages/:id"
    assert doc_notation("get", "/api/agents/{id}") == "GET /api/agents/:id"
    assert "GET /api/events" in mentioned()


async def test_every_served_route_is_in_api_md(relay: Relay) -> None:
    missing = sorted(served(relay) - mentioned())
    assert missing == [], f"document these in docs/api.md as `METHOD /api/path`: {missing}"


async def test_api_md_mentions_no_route_that_is_not_served(relay: Relay) -> None:
    stale = sorted(mentioned() - served(relay))
    assert stale == [], f"docs/api.md describes routes relayd does not serve: {stale}"
