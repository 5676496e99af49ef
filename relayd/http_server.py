"""The HTTP connection layer under the aiohttp app: what aiohttp's own parser refuses (bad
request lines, unsupported `Content-Encoding`, oversized fields) is answered with the
contract's JSON error instead of aiohttp's plain text and a logged traceback."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

log = logging.getLogger("relayd.http")

_STATUS_CODES = {400: "invalid_request", 413: "payload_too_large", 431: "invalid_request"}


class GuardedRequestHandler(RequestHandler):
    """One client connection."""

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if status >= 500 or request.writer.output_size > 0:
            return super().handle_error(request, status, exc, message)
        # a client's malformed request: no traceback in our log, a JSON answer for it
        log.debug("refused a malformed request from %s: %s", request.remote, exc)
        reason = getattr(exc, "message", None) or message or "malformed request"
        payload = {"error": f"malformed request: {str(reason).strip()[:200]}",
                   "code": _STATUS_CODES.get(status, "invalid_request")}
        response = web.Response(status=status, text=json.dumps(payload),
                                content_type="application/json")
        response.force_close()
        return response


class GuardedServer(web.Server):
    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


class GuardedAppRunner(web.AppRunner):
    """An AppRunner whose connections are GuardedRequestHandlers."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = GuardedServer  # same object, same state; only __call__ differs
        return server
