"""Baseline for the benchmarks: a bare aiohttp server on uvloop + orjson that stores nothing.

POST /api/messages parses the same JSON and answers 201 without storing it; GET /api/messages
answers an empty inbox page (what a poller mostly gets); GET /api/events holds SSE streams open
and POST /fanout writes one frame to every stream; GET /bare/info says which event loop and
JSON library it runs (the benchmarks print it, so a missing uvloop/orjson cannot go unseen).
"""

from __future__ import annotations

import asyncio
import sys
from itertools import count

from aiohttp import web

try:
    import orjson

    def loads(raw: bytes) -> object:
        return orjson.loads(raw)

    def dumps(value: object) -> bytes:
        return orjson.dumps(value)
except ImportError:  # the figures then say so (GET /bare/info)
    import json

    orjson = None  # type: ignore[assignment]

    def loads(raw: bytes) -> object:
        return json.loads(raw)

    def dumps(value: object) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

try:
    import uvloop
except ImportError:
    uvloop = None  # type: ignore[assignment]

streams: set[web.StreamResponse] = set()
ids = count(1)


def answer(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=dumps(payload), status=status, content_type="application/json")


async def send(request: web.Request) -> web.Response:
    data = loads(await request.read())
    if not isinstance(data, dict):
        return answer({"error": "not an object", "code": "invalid_json"}, 400)
    return answer({"id": next(ids), **data, "recipients": []}, 201)


async def register(request: web.Request) -> web.Response:
    data = loads(await request.read())
    return answer(data, 201)


async def inbox(request: web.Request) -> web.Response:
    return answer({"messages": [], "cursor": int(request.query.get("since", "0"))})


async def events(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    await response.write(b": connected\n\n")
    streams.add(response)
    try:
        while True:
            await request.app["stop"].wait()
    finally:
        streams.discard(response)


async def fanout(request: web.Request) -> web.Response:
    data = loads(await request.read())
    frame = b"id: %d\nevent: message.new\ndata: %b\n\n" % (next(ids), dumps(data))
    for stream in tuple(streams):
        try:
            await stream.write(frame)
        except (ConnectionError, RuntimeError):  # a client of an earlier round went away
            streams.discard(stream)
    return answer({"streams": len(streams)}, 201)


async def info(request: web.Request) -> web.Response:
    loop = asyncio.get_running_loop()
    return answer({"loop": f"{type(loop).__module__}.{type(loop).__name__}",
                   "json": "orjson" if orjson is not None else "json"})


async def stop_event(app: web.Application) -> None:
    app["stop"] = asyncio.Event()


def main() -> None:
    app = web.Application()
    app.on_startup.append(stop_event)
    app.router.add_post("/api/messages", send)
    app.router.add_get("/api/messages", inbox)
    app.router.add_post("/api/agents", register)
    app.router.add_get("/api/events", events)
    app.router.add_post("/fanout", fanout)
    app.router.add_get("/bare/info", info)
    loop = uvloop.new_event_loop() if uvloop is not None else asyncio.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None,
                loop=loop)


if __name__ == "__main__":
    main()
