"""MCP as agents use it: the official SDK's client against a real relayd subprocess (/mcp,
streamable HTTP), and `relayctl mcp` spawned over stdio with the SDK's stdio client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import httpx2
import psutil
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client

from relayd.mcp.specs import INBOX_NOTE, TOOLS
from tests.helpers import RelaydProcess

TOKEN = "mcp-admin-token"
READER_TOKEN = "mcp-reader-token"  # an integration that may only read agents
CI_TOKEN = "mcp-ci-token"  # an integration that files tasks
INTEGRATIONS = [
    {"name": "reader", "token": READER_TOKEN, "scopes": ["agents:read"]},
    {"name": "ci", "token": CI_TOKEN, "scopes": ["tasks:create"]},
]
TOOL_NAMES = {tool.name for tool in TOOLS}
INITIALIZE = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {},
               "clientInfo": {"name": "raw", "version": "0"}},
}
# the first /mcp call loads the SDK in relayd: seconds on a busy machine (httpx's default is 5 s)
HTTP_TIMEOUT = httpx2.Timeout(60.0)
MCP_HEADERS = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelaydProcess]:
    env = {"AGENT_RELAY_TOKEN": TOKEN, "AGENT_RELAY_INTEGRATIONS": json.dumps(INTEGRATIONS)}
    process = RelaydProcess(tmp_path_factory.mktemp("mcp-relay"), env).start()
    yield process
    process.stop()


@asynccontextmanager
async def mcp_session(relay: RelaydProcess, headers: dict[str, str] | None = None
                      ) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {TOKEN}"} if headers is None else headers
    async with (
        httpx2.AsyncClient(headers=headers, timeout=HTTP_TIMEOUT) as http,
        streamable_http_client(f"{relay.url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


async def ok(session: ClientSession, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await session.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    # the text block carries the same JSON, for clients that only read text
    assert json.loads(result.content[-1].text) == result.structured_content  # type: ignore[union-attr]
    return result.structured_content


async def fails(session: ClientSession, tool: str, code: str, **arguments: Any) -> str:
    """The tool's error result: the API's sentence as text and the API's error JSON."""
    result = await session.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    assert result.structured_content is not None
    assert result.structured_content["code"] == code, result.structured_content
    sentence: str = result.content[0].text  # type: ignore[union-attr]
    assert sentence == result.structured_content["error"]
    return sentence


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ----------------------------------------------------------------------------- auth


async def test_mcp_needs_the_token_and_takes_bearer_or_the_relay_header(
    relay: RelaydProcess,
) -> None:
    async with aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"X-Agent-Relay-Token": "no"}):
            resp = await http.post(f"{relay.url}/mcp", json=INITIALIZE,
                                   headers={**MCP_HEADERS, **headers})
            assert resp.status == 401
            assert resp.headers["WWW-Authenticate"].startswith("Bearer")
            assert (await resp.json())["code"] == "unauthorized"
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {"X-Agent-Relay-Token": TOKEN}):
        async with mcp_session(relay, headers) as session:
            assert {t.name for t in (await session.list_tools()).tools} == TOOL_NAMES


async def test_an_integration_token_uses_only_the_tools_its_scopes_allow(
    relay: RelaydProcess,
) -> None:
    async with mcp_session(relay, {"Authorization": f"Bearer {READER_TOKEN}"}) as session:
        assert "agents" in await ok(session, "relay_agents")
        sentence = await fails(session, "relay_send", "forbidden",
                               agent="r", to="broadcast", body="hi")
        assert sentence == "this token lacks the scope messages:write"
        await fails(session, "relay_register", "forbidden", agent="r")


# ----------------------------------------------------------------------------- tools


async def test_tools_are_listed_with_their_schemas(relay: RelaydProcess) -> None:
    async with mcp_session(relay) as session:
        tools = {t.name: t for t in (await session.list_tools()).tools}
    assert set(tools) == TOOL_NAMES
    send = tools["relay_send"].input_schema
    assert send["required"] == ["agent", "to", "body"]
    assert send["properties"]["replyTo"]["type"] == "integer"
    assert tools["relay_agents"].annotations is not None
    assert tools["relay_agents"].annotations.read_only_hint is True


async def test_register_agents_send_inbox_reply_claim(relay: RelaydProcess) -> None:
    alice, bob, carol, tag = unique("alice"), unique("bob"), unique("carol"), unique("tag")
    async with mcp_session(relay) as session:
        agent = await ok(session, "relay_register", agent=alice, label="Alice", tags=[tag])
        assert agent["id"] == alice and agent["tags"] == [tag] and agent["status"] == "online"
        await ok(session, "relay_register", agent=bob)
        listed = await ok(session, "relay_agents", tag=tag)
        assert [a["id"] for a in listed["agents"]] == [alice]
        await ok(session, "relay_register", agent=carol, tags=[tag])

        sent = await ok(session, "relay_send", agent=bob, to=alice, body="review #12?",
                        subject="review", idempotencyKey=unique("k"))
        assert sent["from"] == bob and sent["recipients"] == [alice]

        result = await session.call_tool("relay_inbox", {"agent": alice})
        assert result.content[0].text == INBOX_NOTE  # type: ignore[union-attr]
        inbox = result.structured_content
        assert inbox is not None
        assert [m["id"] for m in inbox["messages"]] == [sent["id"]]
        assert inbox["messages"][0]["read"] is True and inbox["cursor"] == sent["id"]
        assert (await ok(session, "relay_inbox", agent=alice))["messages"] == []  # read now
        again = await ok(session, "relay_inbox", agent=alice, unread=False, markRead=False)
        assert [m["id"] for m in again["messages"]] == [sent["id"]]

        reply = await ok(session, "relay_reply", agent=alice, messageId=sent["id"], body="yes")
        assert reply["to"] == bob and reply["replyTo"] == sent["id"]
        assert reply["threadId"] == sent["id"] and reply["subject"] == "review"

        offer = await ok(session, "relay_send", agent=bob, to=f"tag:{tag}", body="take it",
                         claimable=True)
        assert sorted(offer["recipients"]) == sorted([alice, carol])
        claimed = await ok(session, "relay_claim", agent=alice, messageId=offer["id"])
        assert claimed["claimedBy"] == alice

        # the same calls' error paths carry the API's sentences and codes
        assert await fails(session, "relay_register", "invalid_request", agent="no spaces") \
            == "'agent' must match [A-Za-z0-9._:@-]{1,128}"
        await fails(session, "relay_agents", "invalid_request", status="asleep")
        await fails(session, "relay_inbox", "not_found", agent=unique("ghost"))
        await fails(session, "relay_reply", "not_found", agent=alice, messageId=10**9, body="x")
        result = await session.call_tool("relay_claim", {"agent": carol,
                                                          "messageId": offer["id"]})
        assert result.is_error and result.structured_content is not None
        assert result.structured_content["code"] == "already_claimed"
        assert result.structured_content["claimedBy"] == alice
        await fails(session, "relay_claim", "invalid_request", agent=bob)


async def test_send_to_an_unknown_agent_is_the_apis_404(relay: RelaydProcess) -> None:
    nobody = unique("nobody")
    async with mcp_session(relay) as session:
        sentence = await fails(session, "relay_send", "not_found", agent="ci", to=nobody,
                               body="hi")
    assert sentence == f"agent '{nobody}' is not registered"


async def test_pair_tools(relay: RelaydProcess) -> None:
    ann, ben = unique("ann"), unique("ben")
    async with mcp_session(relay) as session:
        await ok(session, "relay_register", agent=ann)
        await ok(session, "relay_register", agent=ben)
        pair = await ok(session, "relay_pair", agent=ann, action="invite", to=f"id:{ben}",
                        objective="fix the flaky test")
        assert pair["status"] == "pending" and pair["partner"] == ben
        await fails(session, "relay_pair", "forbidden", agent=ann, action="accept",
                    pairId=pair["id"])  # only the partner accepts
        assert (await ok(session, "relay_pair", agent=ben, action="accept",
                         pairId=pair["id"]))["status"] == "active"
        said = await ok(session, "relay_pair", agent=ben, action="send", pairId=pair["id"],
                        body="on it")
        assert said["recipients"] == [ann] and said["meta"]["pairId"] == pair["id"]
        mine = await ok(session, "relay_pair", agent=ann, action="list", status="active")
        assert [p["id"] for p in mine["pairs"]] == [pair["id"]]
        assert (await ok(session, "relay_pair", agent=ann, action="get",
                         pairId=pair["id"]))["objective"] == "fix the flaky test"
        ended = await ok(session, "relay_pair", agent=ann, action="hangup", pairId=pair["id"],
                         reason="done")
        assert ended["status"] == "ended" and ended["endedBy"] == ann
        await fails(session, "relay_pair", "invalid_state", agent=ben, action="send",
                    pairId=pair["id"], body="late")
        await fails(session, "relay_pair", "invalid_request", agent=ann, action="dance")
        await fails(session, "relay_pair", "invalid_request", agent=ann, action="get")
        await fails(session, "relay_pair", "not_found", agent=ann, action="get", pairId=10**9)


async def test_task_tools(relay: RelaydProcess) -> None:
    worker, other = unique("worker"), unique("other")
    async with mcp_session(relay) as session:
        await ok(session, "relay_register", agent=worker)
        await ok(session, "relay_register", agent=other)
        headers = {"Authorization": f"Bearer {CI_TOKEN}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            resp = await http.post(f"{relay.api}/integrations/events", json={
                "type": "ci.failed", "title": "main is red", "target": worker})
            assert resp.status == 201, await resp.text()
            task_id = (await resp.json())["task"]["id"]
        listed = await ok(session, "relay_tasks", target=worker)
        assert [t["id"] for t in listed["tasks"]] == [task_id]
        one = await ok(session, "relay_tasks", taskId=task_id)
        assert one["title"] == "main is red" and one["events"][0]["type"]
        claimed = await ok(session, "relay_claim", agent=worker, taskId=task_id)
        assert claimed["status"] == "claimed" and claimed["claimedBy"] == worker
        await fails(session, "relay_task_update", "forbidden", agent=other, taskId=task_id,
                    status="done")
        moved = await ok(session, "relay_task_update", agent=worker, taskId=task_id,
                         status="in_progress", progress=50)
        assert moved["status"] == "in_progress" and moved["progress"] == 50
        done = await ok(session, "relay_task_update", agent=worker, taskId=task_id,
                        status="done", result={"fixed": True})
        assert done["status"] == "done"
        await fails(session, "relay_task_update", "invalid_state", agent=worker,
                    taskId=task_id, status="in_progress")
        await fails(session, "relay_tasks", "not_found", taskId=10**9)
        await fails(session, "relay_tasks", "invalid_request", status="sleeping")
        await fails(session, "relay_task_update", "invalid_request", agent=worker,
                    status="done")


# ----------------------------------------------------------------------------- bad input


async def test_bad_input_is_an_error_result_and_the_relay_keeps_serving(
    relay: RelaydProcess,
) -> None:
    async with mcp_session(relay) as session:
        assert await fails(session, "relay_send", "invalid_request",
                           agent="a", to=5, body="x") == "'to' must be a string"
        await fails(session, "relay_send", "invalid_request", agent="a", to="b")
        await fails(session, "relay_inbox", "invalid_request", agent="a", limit=0)
        await fails(session, "relay_inbox", "invalid_request", agent="a", wait=61)
        await fails(session, "relay_register", "invalid_request", agent="a", tags="x")
        await fails(session, "relay_send", "invalid_request", agent="a", to="b", body="x",
                    idempotencyKey="k" * 129)
        await fails(session, "relay_nope", "not_found")
        assert {t.name for t in (await session.list_tools()).tools} == TOOL_NAMES
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {TOKEN}"}) as http:
        for body in (b"{not json", b"[]", b'{"jsonrpc": "2.0"}'):
            resp = await http.post(f"{relay.url}/mcp", data=body, headers=MCP_HEADERS)
            assert 400 <= resp.status < 500, (body, resp.status, await resp.text())
        # arguments that are not an object: a JSON-RPC error from the SDK, not a crash
        call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                "params": {"name": "relay_send", "arguments": "not an object"}}
        resp = await http.post(f"{relay.url}/mcp", json=call,
                               headers={**MCP_HEADERS, "MCP-Protocol-Version": "2025-06-18"})
        assert resp.status < 500, await resp.text()
        assert "error" in await resp.json()
        # the transport's GET stream gets its headers at once (not on its first event)
        resp = await asyncio.wait_for(http.get(f"{relay.url}/mcp", headers={
            "Accept": "text/event-stream", "MCP-Protocol-Version": "2025-06-18"}), 10)
        assert resp.status < 500
        resp.close()
        resp = await http.put(f"{relay.url}/mcp", json={})
        assert resp.status == 405 and (await resp.json())["code"] == "method_not_allowed"
        resp = await http.post(f"{relay.url}/mcp", data=b"x" * (2 * 1024 * 1024),
                               headers=MCP_HEADERS)
        assert resp.status == 413 and (await resp.json())["code"] == "payload_too_large"
        resp = await http.get(f"{relay.api}/health")
        assert resp.status == 200
    assert "Traceback" not in relay.stderr


# ----------------------------------------------------------------------------- stdio


def _stdio_params(relay: RelaydProcess, tmp: Path, agent: str | None,
                  **extra: str) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AGENT_RELAY_", "XDG_", "CLAUDE"))}
    env.update(AGENT_RELAY_URL=str(relay.url), AGENT_RELAY_TOKEN=TOKEN,
               AGENT_RELAY_CONFIG=str(tmp / "none.toml"),
               HOME=str(tmp), XDG_CONFIG_HOME=str(tmp / "xdg"), **extra)
    if agent is not None:
        env["AGENT_RELAY_AGENT_ID"] = agent
    relayctl = str(Path(sys.executable).parent / "relayctl")
    return StdioServerParameters(command=relayctl, args=["mcp"], env=env)


async def test_relayctl_mcp_serves_the_tools_on_stdio_as_the_session_agent(
    relay: RelaydProcess, tmp_path: Path,
) -> None:
    me, peer = unique("stdio"), unique("peer")
    async with mcp_session(relay) as http_session:
        await ok(http_session, "relay_register", agent=peer)
        async with (
            stdio_client(_stdio_params(relay, tmp_path, me)) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert set(tools) == TOOL_NAMES
            assert "agent" not in tools["relay_send"].input_schema["properties"]
            agent = await ok(session, "relay_register", label="Stdio", agent="ignored")
            assert agent["id"] == me and agent["provider"] == "mcp"

            sent = await ok(http_session, "relay_send", agent=peer, to=me, body="ping")
            inbox = await ok(session, "relay_inbox")
            assert [m["id"] for m in inbox["messages"]] == [sent["id"]]
            reply = await ok(session, "relay_reply", messageId=sent["id"], body="pong")
            assert reply["from"] == me and reply["to"] == peer
            assert [m["body"] for m in (await ok(http_session, "relay_inbox",
                                                  agent=peer))["messages"]] == ["pong"]
            assert (await ok(session, "relay_agents", tag="none-such"))["agents"] == []
            assert (await ok(session, "relay_pair", action="list"))["pairs"] == []
            assert "tasks" in await ok(session, "relay_tasks")

            # the relay's refusals come through with its sentences and codes
            await fails(session, "relay_send", "not_found", to=unique("x"), body="hi")
            await fails(session, "relay_claim", "invalid_request")
            await fails(session, "relay_claim", "invalid_request", messageId="1/../2")
            await fails(session, "relay_task_update", "not_found", taskId=10**9,
                        status="done")
            await fails(session, "relay_inbox", "invalid_request", limit=0)


async def test_relayctl_mcp_under_claude_code_acts_as_the_agent_its_session_recorded(
    relay: RelaydProcess, tmp_path: Path,
) -> None:
    """As the plugin's monitor does: the id SessionStart recorded for the Claude process,
    looked up at each call (the hook may run after the MCP server starts; /clear changes it)."""
    claude_pid = str(os.getpid())  # stands for the Claude Code process
    state = tmp_path / "run" / "agent-relay" / "claude"
    state.mkdir(parents=True, mode=0o700)
    session_file = state / f"session-{claude_pid}.json"
    first, second = unique("claude-a"), unique("claude-b")
    params = _stdio_params(relay, tmp_path, None, CLAUDE_PID=claude_pid,
                           XDG_RUNTIME_DIR=str(tmp_path / "run"))
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        session_file.write_text(json.dumps({"agentId": first}))
        assert (await ok(session, "relay_register"))["id"] == first
        session_file.write_text(json.dumps({"agentId": second}))  # /clear: a new session
        assert (await ok(session, "relay_register"))["id"] == second


async def test_relayctl_mcp_answers_tool_errors_while_the_relay_is_down(
    tmp_path: Path, unused_tcp_port: int,
) -> None:
    down = RelaydProcess(tmp_path)
    down.url = f"http://127.0.0.1:{unused_tcp_port}"  # nothing listens there
    async with (
        stdio_client(_stdio_params(down, tmp_path, "lonely")) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        for _ in range(2):  # still serving after the first failure
            sentence = await fails(session, "relay_inbox", "unavailable")
            assert sentence.startswith("no relay answers at")


# ----------------------------------------------------------------------------- memory


def _mapped(pid: int, needle: str) -> bool:
    return needle in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux /proc")
async def test_relayd_loads_the_sdk_on_first_use_and_answers_calls_in_flight_at_stop(
    tmp_path: Path,
) -> None:
    relay = RelaydProcess(tmp_path, {"AGENT_RELAY_TOKEN": TOKEN}).start()
    try:
        assert relay.proc is not None
        pid = relay.proc.pid
        idle = psutil.Process(pid).memory_info().rss
        assert idle < 60 * 2**20, f"idle RSS {idle / 2**20:.1f} MiB"
        assert not _mapped(pid, "pydantic_core")  # the SDK's models are not loaded
        async with mcp_session(relay) as session:
            await ok(session, "relay_register", agent="waiter")
            assert _mapped(pid, "pydantic_core")
            # a long poll in flight when relayd is told to stop still gets its (empty) answer
            waiting = asyncio.ensure_future(
                session.call_tool("relay_inbox", {"agent": "waiter", "wait": 30}))
            await asyncio.sleep(0.5)
            relay.signal(signal.SIGTERM)
            result = await asyncio.wait_for(waiting, 15)
            assert not result.is_error and result.structured_content is not None
            assert result.structured_content["messages"] == []
        assert await asyncio.to_thread(relay.wait, 15) == 0
        assert "Traceback" not in relay.stderr, relay.stderr
    finally:
        relay.stop()
