"""What a web page can do to a relay, tried against real relayd processes over real sockets:
cross-site form posts, DNS rebinding (a foreign Host), foreign origins on every method, bodies
that are not JSON and bodies that cannot be decoded. Each is refused and stores nothing; the
hosts and origins a user allows still work, and a token relay ignores Host but not auth."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from tests.helpers import RelaydProcess

Answer = tuple[int, dict[str, str], Any]
TOKEN = "browser-test-token"
MESSAGE = {"from": "page", "to": "broadcast", "body": "rm -rf ~"}


def call(relay: RelaydProcess, method: str, path: str, *, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> Answer:
    """One request with exactly the headers given (Host included, when given)."""
    assert relay.url is not None
    parts = urlsplit(relay.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        raw = resp.read()
        heads = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    ctype = heads.get("content-type", "")
    return resp.status, heads, json.loads(raw) if raw and "json" in ctype else raw


def as_json(payload: Any) -> bytes:
    return json.dumps(payload).encode()


JSON = {"Content-Type": "application/json"}


def stored(relay: RelaydProcess, headers: dict[str, str] | None = None) -> tuple[int, int, int]:
    status, _, stats = call(relay, "GET", "/api/stats", headers=headers)
    assert status == 200, stats
    return stats["agents"]["total"], stats["messages"]["total"], stats["events"]["latestId"]


def assert_refused(answer: Answer, status: int, code: str) -> None:
    got, heads, payload = answer
    assert got == status, payload
    assert heads["content-type"].startswith("application/json")
    assert payload["code"] == code and payload["error"], payload


FORM_BODIES = [
    ("text/plain", b'{"from": "page", "to": "broadcast", "body": "rm -rf ~"}'),
    ("application/x-www-form-urlencoded", b"from=page&to=broadcast&body=rm+-rf+~"),
    (
        "multipart/form-data; boundary=xyz",
        b'--xyz\r\nContent-Disposition: form-data; name="body"\r\n\r\nrm -rf ~\r\n--xyz--\r\n',
    ),
]


def test_cross_site_forms_and_rebound_hosts_are_refused_and_store_nothing(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process()
    before = stored(relay)
    port = urlsplit(relay.url or "").port
    for ctype, body in FORM_BODIES:
        # what a browser sends for a cross-site <form method=post enctype=...>
        browser = {"Content-Type": ctype, "Origin": "http://evil.example",
                   "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
        for path in ("/api/messages", "/api/agents", "/api/integrations/events", "/mcp"):
            assert_refused(call(relay, "POST", path, body=body, headers=browser), 403,
                           "forbidden")
        # an old browser without Origin / Sec-Fetch-*: the content type alone is refused
        answer = call(relay, "POST", "/api/messages", body=body, headers={"Content-Type": ctype})
        assert_refused(answer, 415, "unsupported_media_type")
        assert "Content-Type: application/json" in answer[2]["error"]
    # DNS rebinding: the page's own name in Host, any route, any method
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example",
                 "localhost.evil.example", "[::2]"):
        rebound = {"Host": host, **JSON}
        for method, path in (("GET", "/"), ("GET", "/api/agents"), ("GET", "/api/events"),
                             ("GET", "/api/health"), ("GET", "/api/openapi.json"),
                             ("GET", "/static/app.js"), ("POST", "/mcp"),
                             ("GET", "/no/such/route"), ("DELETE", "/api/messages/1")):
            assert_refused(call(relay, method, path, headers=rebound), 403, "forbidden")
        answer = call(relay, "POST", "/api/messages", body=as_json(MESSAGE), headers=rebound)
        assert_refused(answer, 403, "forbidden")
        assert "AGENT_RELAY_ALLOWED_HOSTS" in answer[2]["error"]
    # a foreign Origin on reads and streams too (a rebound or CORS-less page)
    for path in ("/api/messages", "/api/events", "/api/agents", "/"):
        answer = call(relay, "GET", path, headers={"Origin": "http://evil.example"})
        assert_refused(answer, 403, "forbidden")
        no_cors = call(relay, "GET", path, headers={"Sec-Fetch-Site": "cross-site"})
        assert_refused(no_cors, 403, "forbidden")
    assert stored(relay) == before
    # the loopback names and the relay's own origin still work
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.9.8.7", "localhost", "[::1]"):
        assert call(relay, "GET", "/api/health", headers={"Host": host})[0] == 200, host
    own = {**JSON, "Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    assert call(relay, "POST", "/api/messages", body=as_json(MESSAGE), headers=own)[0] == 201
    assert call(relay, "GET", "/", headers={"Sec-Fetch-Site": "none"})[0] == 200


def test_allowed_hosts_and_origins_still_work(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process(env={
        "AGENT_RELAY_ALLOWED_HOSTS": "relay.example, box.tailnet.example:4850",
        "AGENT_RELAY_CORS_ORIGINS": "http://app.example",
    })
    for host in ("relay.example", "relay.example:9999", "RELAY.example.",
                 "box.tailnet.example:4850"):
        status, _, payload = call(relay, "GET", "/api/agents", headers={"Host": host})
        assert status == 200, (host, payload)
    assert_refused(call(relay, "GET", "/api/agents", headers={"Host": "box.tailnet.example:1"}),
                   403, "forbidden")
    assert_refused(call(relay, "GET", "/api/agents", headers={"Host": "box.tailnet.example"}),
                   403, "forbidden")
    page = {**JSON, "Origin": "http://app.example", "Sec-Fetch-Site": "cross-site",
            "Host": "relay.example"}
    status, heads, payload = call(relay, "POST", "/api/messages", body=as_json(MESSAGE),
                                  headers=page)
    assert status == 201, payload
    assert heads["access-control-allow-origin"] == "http://app.example"
    own = {**JSON, "Host": "relay.example:4850", "Origin": "http://relay.example:4850"}
    assert call(relay, "POST", "/api/messages", body=as_json(MESSAGE), headers=own)[0] == 201
    assert_refused(call(relay, "POST", "/api/messages", body=as_json(MESSAGE),
                        headers={**page, "Origin": "http://app.example.evil"}), 403, "forbidden")
    assert stored(relay)[1] == 2


def test_a_token_relay_ignores_host_but_not_auth(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process(env={"AGENT_RELAY_TOKEN": TOKEN})
    admin = {"Authorization": f"Bearer {TOKEN}"}
    rebound = {"Host": "relay.my-tailnet.example"}
    assert call(relay, "GET", "/api/agents", headers={**rebound, **admin})[0] == 200
    assert_refused(call(relay, "GET", "/api/agents", headers=rebound), 401, "unauthorized")
    answer = call(relay, "POST", "/api/messages", body=as_json(MESSAGE),
                  headers={**rebound, **JSON})
    assert_refused(answer, 401, "unauthorized")
    # the token does not make a foreign page's request acceptable
    assert_refused(call(relay, "POST", "/api/messages", body=as_json(MESSAGE),
                        headers={**admin, **JSON, "Origin": "http://evil.example"}),
                   403, "forbidden")
    assert stored(relay, admin)[1] == 0
    answer = call(relay, "POST", "/api/messages", body=as_json(MESSAGE),
                  headers={**rebound, **admin, **JSON})
    assert answer[0] == 201, answer


def test_json_bodies_only_and_bad_encodings_are_400(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process()
    body = as_json({"id": "agent-1"})
    for ctype in ("application/json", "application/json; charset=utf-8",
                  "Application/JSON;charset=UTF-8", "application/merge-patch+json"):
        status, _, payload = call(relay, "POST", "/api/agents", body=body,
                                  headers={"Content-Type": ctype})
        assert status in (200, 201), (ctype, payload)
    for refused in (None, "text/plain", "text/json", "application/octet-stream",
                    "application/jsonx", "application/x-json-stream"):
        heads: dict[str, str] = {} if refused is None else {"Content-Type": refused}
        answer = call(relay, "PATCH", "/api/agents/agent-1", body=as_json({"label": "x"}),
                      headers=heads)
        assert_refused(answer, 415, "unsupported_media_type")
    # an empty body needs no type (POST /agents/:id/heartbeat)
    status, _, _ = call(relay, "POST", "/api/agents/agent-1/heartbeat",
                        headers={"Content-Length": "0"})
    assert status == 200
    before = stored(relay)
    for encoding, raw in (("gzip", b"not gzip at all"), ("deflate", b"\x00\x01broken"),
                          ("gzip", gzip.compress(b'{"from": "a", "to": "broadcast"')[:-6]),
                          ("br", b"\x8b\x00\x80"), ("zstd", b"\x28\xb5\x2f"),
                          ("x-unknown", b"{}")):
        answer = call(relay, "POST", "/api/messages", body=raw,
                      headers={**JSON, "Content-Encoding": encoding})
        assert_refused(answer, 400, answer[2]["code"] if isinstance(answer[2], dict) else "?")
    good = gzip.compress(as_json(MESSAGE))
    answer = call(relay, "POST", "/api/messages", body=good,
                  headers={**JSON, "Content-Encoding": "gzip"})
    assert answer[0] == 201, answer
    assert stored(relay)[1] == before[1] + 1
    assert call(relay, "GET", "/api/health")[0] == 200
    assert "Traceback" not in relay.stderr and " 500" not in relay.stderr, relay.stderr
