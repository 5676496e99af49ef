"""Schemathesis against a real `relayd` subprocess, driven by the document it serves.

Property-based requests (valid and invalid) for every documented operation; the run fails on any
5xx, any status code, content type, header or body the document does not describe, any invalid
request that is accepted, and any operation that answers without the token. Bounded: at most
25 examples per operation, one worker, a fixed seed, no example database.
"""

from __future__ import annotations

import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from tests.helpers import RelaydProcess

TOKEN = "schemathesis-admin-token"
SEED = "20261125"
MAX_EXAMPLES = "25"
RUN_TIMEOUT_SECONDS = 150
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "missing_required_header",
    "ignored_auth",
    "unsupported_method",
    "allow_header_conformance",
]

# Half of the generated ids and actors are ones that exist (seeded below), so the checks also
# see the 200/201/409 answers, not only 404s (DELETE keeps random ids: it would remove them).
# `wait` is pinned to 0: a real long-poll blocks for its full `wait` when nothing matches
# (tests/api cover the long-poll itself).
CONFIG = """
[dictionaries.agents]
values = ["alice", "bob", "carol", "dave"]
[dictionaries.ids]
values = [1, 2, 3]

[[operations]]
include-path-regex = "^/agents/[{]id[}]"
exclude-method = "DELETE"
parameters = { "path.id" = { dictionary = "agents", probability = 0.5 } }

[[operations]]
include-path-regex = "^/(messages|pairs|tasks)/[{]id[}]"
exclude-method = "DELETE"
parameters = { "path.id" = { dictionary = "ids", probability = 0.5 }, \
"body.agent" = { dictionary = "agents", probability = 0.5 } }

[[operations]]
include-name = "POST /pairs"
parameters = { "body.from" = { dictionary = "agents", probability = 0.5 }, \
"body.to" = { dictionary = "agents", probability = 0.5 } }

[[operations]]
include-name = "GET /messages"
parameters = { "query.wait" = 0, "query.for" = { dictionary = "agents", probability = 0.5 } }
"""
# /agents/find shares its URL with /agents/{id} for an agent whose id is "find": PATCH and
# DELETE there address that agent, so `Allow` rightly lists them (see docs/api.md).
ACCEPTED = [("GET /agents/find", "Undocumented methods advertised: DELETE, PATCH")]


def accepted(operation: str | None, text: str) -> bool:
    return any(operation == name and reason in text for name, reason in ACCEPTED)


def run_schemathesis(api: str, workdir: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    config = workdir / "schemathesis.toml"
    config.write_text(CONFIG)
    report = workdir / "junit.xml"
    command = [
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
        "run", f"{api}/openapi.json",
        "--header", f"Authorization: Bearer {TOKEN}",
        "--checks", ",".join(CHECKS),
        "--exclude-path", "/events",  # an endless stream; tests/api/test_events*.py cover it
        "--max-examples", MAX_EXAMPLES,
        "--seed", SEED,
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "10",
        "--no-color",
        "--report", "junit",
        "--report-junit-path", str(report),
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_SECONDS
    )
    return result, report


async def seed(api: str) -> int:
    """Agents, claimable messages, a pair and a task for the generated ids to hit.

    Answers how many operations the document describes.
    """
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session:
        for agent in ("alice", "bob", "carol", "dave"):
            agent_body = {"id": agent, "tags": ["team"], "capabilities": ["chat", "review"]}
            assert (await session.post(f"{api}/agents", json=agent_body)).status == 201
        for n in range(3):
            body = {"from": "ci", "to": "tag:team", "body": f"job {n}", "claimable": True}
            assert (await session.post(f"{api}/messages", json=body)).status == 201
        pair = {"from": "alice", "to": "id:bob", "objective": "fuzz"}
        assert (await session.post(f"{api}/pairs", json=pair)).status == 201
        event = {"type": "alert", "title": "disk full", "target": "tag:team", "dedupeKey": "d"}
        await session.post(f"{api}/integrations/events", json=event)  # when tasks are served
        async with session.get(f"{api}/openapi.json") as response:
            document = await response.json()
    return sum(len(item) for item in document["paths"].values())


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 30)
async def test_the_api_conforms_to_its_document(
    relayd_process: Callable[..., RelaydProcess], tmp_path: Path
) -> None:
    relay = relayd_process(env={"AGENT_RELAY_TOKEN": TOKEN})
    operations = await seed(relay.api)
    result, report = run_schemathesis(relay.api, tmp_path)
    output = result.stdout[-6000:] + result.stderr[-2000:]

    assert report.exists(), output
    suite = ET.parse(report).getroot()
    tested = {case.get("name", "") for case in suite.iter("testcase")}
    assert len(tested) >= operations - 1, f"only {sorted(tested)} were tested\n{output}"
    issues = [
        (case.get("name"), issue.text or "")
        for case in suite.iter("testcase")
        for issue in [*case.iter("failure"), *case.iter("error")]
    ]
    problems = [f"{name}: {text[:600]}" for name, text in issues if not accepted(name, text)]
    assert not problems, "\n\n".join(problems)
    # Schemathesis exits 1 on the accepted findings too; any other non-zero exit is a problem.
    assert result.returncode == 0 or (issues and result.returncode == 1), output
    assert "unhandled error" not in relay.stderr, relay.stderr[-4000:]


# Regression tests for what schemathesis found, fast and deterministic.


async def test_a_long_query_string_gets_the_json_400(http: aiohttp.ClientSession) -> None:
    # aiohttp's own limit (8 KiB request line) answered in plain text.
    response = await http.get("/api/agents", params={"tag": "\U0001f600" * 1500})
    assert response.status == 400
    assert (await response.json())["code"] == "invalid_request"


async def test_a_wrong_method_on_the_cursor_path_is_405(http: aiohttp.ClientSession) -> None:
    # /api/messages/{id} used to take "cursor" as an id and answer 404.
    for method in ("PATCH", "DELETE"):
        response = await http.request(method, "/api/messages/cursor", json={})
        assert response.status == 405
        assert response.headers["Allow"] == "GET"
        assert (await response.json())["code"] == "method_not_allowed"
    assert (await http.get("/api/messages/abc")).status == 404


async def test_empty_query_values_count_as_not_given(http: aiohttp.ClientSession) -> None:
    response = await http.get("/api/messages?limit=&since=&wait=&unread=")
    assert response.status == 200
    assert await response.json() == {"messages": [], "cursor": 0}
    assert (await http.get("/api/messages?order=")).status == 400
