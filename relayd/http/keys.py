"""How a handler finds the running relay's Context: the app key it is stored under."""

from __future__ import annotations

from aiohttp import web

from relayd.daemon.context import Context

CONTEXT: web.AppKey[Context] = web.AppKey("context", Context)


def context_of(request: web.Request) -> Context:
    return request.app[CONTEXT]
