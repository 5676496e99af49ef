"""A small fake of the OpenAI Responses API (streaming SSE) for a real Codex to talk to.

Codex retries the model API forever when it is unreachable, so tests point a CODEX_HOME's
config.toml at this server on loopback: every turn gets a short assistant answer and completes.
``delay`` holds each answer that long, so a turn stays active (busy) for a while.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from pathlib import Path
from typing import Any

from aiohttp import web

_ids = itertools.count(1)


def _event(kind: str, payload: dict[str, Any]) -> bytes:
    payload = {"type": kind, **payload}
    return f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode()


class FakeModel:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.requests: list[dict[str, Any]] = []
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> FakeModel:
        app = web.Application()
        app.router.add_post("/v1/responses", self._responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_route("*", "/{tail:.*}", self._other)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None  # an asyncio Server: it has .sockets (AbstractServer lacks it)
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [], "models": []})

    async def _other(self, request: web.Request) -> web.Response:
        return web.json_response({"error": {"message": "not faked"}}, status=404)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        try:
            self.requests.append(await request.json())
        except ValueError:
            self.requests.append({})
        n = next(_ids)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        rid = f"resp_{n}"
        item = {"type": "message", "role": "assistant", "id": f"msg_{n}",
                "content": [{"type": "output_text", "text": "noted"}]}
        usage = {"input_tokens": 1, "input_tokens_details": None, "output_tokens": 1,
                 "output_tokens_details": None, "total_tokens": 2}
        try:
            await response.write(_event("response.created", {"response": {"id": rid}}))
            if self.delay:
                await asyncio.sleep(self.delay)
            await response.write(_event("response.output_item.done", {"item": item}))
            await response.write(_event("response.completed",
                                        {"response": {"id": rid, "usage": usage}}))
            await response.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # Codex dropped the stream (a steer restarts the request)
        return response


def write_codex_home(home: Path, base_url: str) -> Path:
    """A CODEX_HOME whose config.toml sends every turn to the fake model."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(
        'model = "fake-model"\n'
        'model_provider = "fake"\n'
        'approval_policy = "never"\n'
        'sandbox_mode = "read-only"\n'
        "[model_providers.fake]\n"
        'name = "fake"\n'
        f'base_url = "{base_url}"\n'
        'wire_api = "responses"\n'
        "requires_openai_auth = false\n"
        "request_max_retries = 0\n"
        "stream_max_retries = 0\n"
        "[analytics]\nenabled = false\n"
        "[feedback]\nenabled = false\n",
        encoding="utf-8",
    )
    return home
