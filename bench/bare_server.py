"""Baseline for the benchmarks: a bare aiohttp server with no storage.

POST /api/messages parses the same JSON and answers 201 without storing it; GET /api/events
holds SSE streams open and POST /fanout writes one frame to every stream.
"""

from __future__ import annotations

import json
import sys
from itertools import count

from aiohttp import web

streams: set[web.StreamResponse] = set()
ids = count(1)


async def send(request: web.Request) -> web.Response:
    data = await request.json()
    payload = {"id": next(ids), **data, "recipients": []}
    return web.json_response(payload, status=201)


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
    data = await request.json()
    frame = f"id: {next(ids)}\nevent: message.new\ndata: {json.dumps(data)}\n\n".encode()
    for stream in tuple(streams):
        try:
            await stream.write(frame)
        except (ConnectionError, RuntimeError):  # a client of an earlier round went away
            streams.discard(stream)
    return web.json_response({"streams": len(streams)}, status=201)


async def stop_event(app: web.Application) -> None:
    import asyncio

    app["stop"] = asyncio.Event()


def main() -> None:
    app = web.Application()
    app.on_startup.append(stop_event)
    app.router.add_post("/api/messages", send)
    app.router.add_get("/api/events", events)
    app.router.add_post("/fanout", fanout)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)


if __name__ == "__main__":
    main()
