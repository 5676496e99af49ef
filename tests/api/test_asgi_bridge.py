"""relayd.mcp.asgi: an aiohttp request served by an ASGI app (what /mcp runs the SDK through),
on a real aiohttp server and client on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from relayd.mcp import asgi

seen: dict[str, Any] = {}


async def echo_app(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
    """Answers what it saw, in two body chunks, with a repeated header."""
    message = await receive()
    seen.update(scope=scope, body=message["body"], more=message["more_body"])
    payload = json.dumps({
        "method": scope["method"], "path": scope["path"],
        "query": scope["query_string"].decode(), "body": message["body"].decode(),
        "extra": scope.get("extra"),
        "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
    }).encode()
    await send({"type": "http.response.start", "status": 207,
                "headers": [(b"content-type", b"application/json"),
                            (b"x-twice", b"1"), (b"x-twice", b"2")]})
    await send({"type": "http.response.body", "body": payload[:10], "more_body": True})
    await send({"type": "http.response.body", "body": payload[10:]})


async def waits_for_disconnect(scope: asgi.Scope, receive: asgi.Receive,
                               send: asgi.Send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream")]})
    await send({"type": "http.response.body", "body": b"data: hello\n\n", "more_body": True})
    seen["after_body"] = await receive()  # parks until the client goes away
    seen["disconnected"].set()


async def sends_nothing(scope: asgi.Scope, receive: asgi.Receive, send: asgi.Send) -> None:
    await receive()


@pytest.fixture
async def server() -> AsyncIterator[str]:
    async def echo(request: web.Request) -> web.StreamResponse:
        return await asgi.serve(echo_app, request, extra_scope={"extra": "principal"})

    async def stream(request: web.Request) -> web.StreamResponse:
        return await asgi.serve(waits_for_disconnect, request)

    async def broken(request: web.Request) -> web.StreamResponse:
        try:
            return await asgi.serve(sends_nothing, request)
        except asgi.ASGIProtocolError as exc:
            return web.Response(status=502, text=str(exc))

    app = web.Application(client_max_size=1024)
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/broken", broken)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_the_app_sees_the_request_and_its_answer_streams_back(server: str) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{server}/echo?a=1&b=%20", data=b'{"x": 1}',
                               headers={"X-Custom": "yes", "Content-Type": "application/json"})
        assert resp.status == 207
        assert resp.headers.getall("X-Twice") == ["1", "2"]
        answer = await resp.json()
    assert answer["method"] == "POST" and answer["path"] == "/echo"
    assert answer["query"] == "a=1&b=%20" and answer["body"] == '{"x": 1}'
    assert answer["headers"]["x-custom"] == "yes" and answer["extra"] == "principal"
    assert seen["more"] is False
    scope = seen["scope"]
    assert scope["type"] == "http" and scope["raw_path"] == b"/echo"
    assert scope["client"][0] == "127.0.0.1" and scope["server"][0] == "127.0.0.1"


async def test_a_body_over_the_limit_never_reaches_the_app(server: str) -> None:
    seen.clear()
    async with aiohttp.ClientSession() as http:
        resp = await http.post(f"{server}/echo", data=b"x" * 4096)
        assert resp.status == 413
    assert "scope" not in seen


async def test_the_app_hears_the_client_leave(server: str) -> None:
    seen["disconnected"] = asyncio.Event()
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{server}/stream")
        assert await resp.content.readline() == b"data: hello\n"
        resp.close()
    await asyncio.wait_for(seen["disconnected"].wait(), 5)
    assert seen["after_body"] == {"type": "http.disconnect"}


async def test_an_app_that_sends_no_answer_is_a_protocol_error(server: str) -> None:
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{server}/broken")
        assert resp.status == 502 and "no response" in await resp.text()
