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

# `wait` is pinned to 0: a real long-poll blocks for its full `wait` when nothing matches, which
# would spend the time budget on sleeping (tests/api cover the long-poll itself).
CONFIG = """
[[operations]]
include-name = "GET /messages"
parameters = { "query.wait" = 0 }
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
        "--max-examples", "25",
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


async def documented_operations(api: str) -> int:
    async with (
        aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as session,
        session.get(f"{api}/openapi.json") as response,
    ):
        document = await response.json()
    return sum(len(item) for item in document["paths"].values())


@pytest.mark.timeout(RUN_TIMEOUT_SECONDS + 30)
async def test_the_api_conforms_to_its_document(
    relayd_process: Callable[..., RelaydProcess], tmp_path: Path
) -> None:
    relay = relayd_process(env={"AGENT_RELAY_TOKEN": TOKEN})
    operations = await documented_operations(relay.api)
    result, report = run_schemathesis(relay.api, tmp_path)
    output = result.stdout[-6000:] + result.stderr[-2000:]

    assert report.exists(), output
    suite = ET.parse(report).getroot()
    tested = {case.get("name") for case in suite.iter("testcase")}
    assert len(tested) >= operations - 1, f"only {sorted(tested)} were tested\n{output}"
    problems = [
        f"{case.get('name')}: {(issue.text or '')[:600]}"
        for case in suite.iter("testcase")
        for issue in [*case.iter("failure"), *case.iter("error")]
        if not accepted(case.get("name"), issue.text or "")
    ]
    assert not problems, "\n\n".join(problems)
    assert result.returncode == 0 or "1 failure" in output, output
    assert "unhandled error" not in relay.stderr, relay.stderr[-4000:]
