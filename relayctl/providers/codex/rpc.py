"""A JSON-RPC client for `codex app-server` over WebSocket (aiohttp).

The app-server speaks JSON-RPC 2.0 without the `jsonrpc` field: requests ``{id, method,
params}``, answers ``{id, result}`` or ``{id, error}``, notifications ``{method, params}``, and
server requests ``{id, method, params}`` (approvals, user input). This client answers no server
request: approvals belong to the person at the Codex UI, never to the relay.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

from relayd import __version__

log = logging.getLogger("relayctl.codex")
INITIALIZE_SECONDS = 5.0  # the app-server answers initialize at once when it is up

Notification = Callable[[str, dict[str, Any]], Awaitable[None] | None]


class RpcError(Exception):
    """The app-server answered a request with an error."""

    def __init__(self, method: str, error: Any) -> None:
        self.method = method
        self.code = error.get("code") if isinstance(error, dict) else None
        self.text = str(error.get("message") if isinstance(error, dict) else error)
        super().__init__(f"{method}: {self.text} ({self.code})")


class Disconnected(Exception):
    """The WebSocket to the app-server closed."""


class AppServerClient:
    def __init__(self, url: str, on_notification: Notification,
                 request_timeout: float = 30.0, token: str | None = None) -> None:
        self.url = url
        self.token = token  # the app-server's capability token, when it requires one
        self.on_notification = on_notification
        self.request_timeout = request_timeout
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def connect(self) -> dict[str, Any]:
        """Open the socket and run the initialize handshake; the initialize result."""
        self._session = aiohttp.ClientSession()
        try:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else None
            self._ws = await self._session.ws_connect(
                self.url, max_msg_size=0, heartbeat=20.0, headers=headers,
                timeout=aiohttp.ClientWSTimeout(ws_close=2.0),
            )
        except BaseException:
            await self._session.close()
            raise
        self.closed.clear()
        self._reader = asyncio.create_task(self._read_loop(), name="codex-rpc-reader")
        async with asyncio.timeout(INITIALIZE_SECONDS):
            result = await self.request("initialize", {
                "clientInfo": {"name": "agent-relay", "title": "Agent Relay sidecar",
                               "version": __version__},
            })
        await self.notify("initialized")
        return result if isinstance(result, dict) else {}

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._session is not None:
            await self._session.close()
        self._fail_pending()
        self.closed.set()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        message: dict[str, Any] = {"method": method}
        if params is not None:
            message["params"] = params
        await self._send(message)

    async def request(self, method: str, params: dict[str, Any]) -> Any:
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send({"id": request_id, "method": method, "params": params})
            return await asyncio.wait_for(future, self.request_timeout)
        except RpcError as exc:
            exc.method = method
            raise RpcError(method, {"code": exc.code, "message": exc.text}) from None
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, message: dict[str, Any]) -> None:
        if self._ws is None or self._ws.closed:
            raise Disconnected(f"not connected to {self.url}")
        try:
            await self._ws.send_str(json.dumps(message))
        except (ConnectionError, aiohttp.ClientError, RuntimeError) as exc:
            raise Disconnected(str(exc)) from None

    async def _read_loop(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    continue
                try:
                    message = json.loads(frame.data)
                except ValueError:
                    continue
                if isinstance(message, dict):
                    await self._dispatch(message)
        except Exception as exc:  # a broken socket ends the connection, never the sidecar
            log.debug("app-server socket error: %r", exc)
        finally:
            self._fail_pending()
            self.closed.set()

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                # A server request (approval, user input, tool call): the person at the Codex
                # UI answers it. We never do, not even to refuse.
                log.debug("leaving server request %s to the user", method)
                return
            params = message.get("params")
            try:
                outcome = self.on_notification(method, params if isinstance(params, dict) else {})
                if outcome is not None:
                    await outcome
            except Exception:
                log.exception("handling %s failed", method)
            return
        future = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if future is None or future.done():
            return
        if "error" in message:
            future.set_exception(RpcError("request", message["error"]))
        else:
            future.set_result(message.get("result"))

    def _fail_pending(self) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Disconnected("the app-server connection closed"))
