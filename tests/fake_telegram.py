"""A fake Telegram Bot API on loopback that speaks the real protocol.

Routes `POST /bot<token>/<method>` with JSON bodies, answers `{"ok": true, "result": …}` or the
real error object `{"ok": false, "error_code", "description", "parameters": {"retry_after"}}`.
`getUpdates` honours `offset` (confirming, i.e. forgetting, every update below it) and long-polls
for `timeout` seconds; `sendMessage` checks the 4096-character limit and, with
`parse_mode: MarkdownV2`, that every reserved character is escaped, as the real server does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

RESERVED = set("_*[]()~`>#+-=|{}.!")
BOT = {"id": 7000001, "is_bot": True, "first_name": "Relay", "username": "relay_test_bot",
       "can_join_groups": True, "can_read_all_group_messages": False,
       "supports_inline_queries": False}


def markdown_v2_error(text: str) -> str | None:
    """The Bot API's complaint about a MarkdownV2 text, or None. Handles bold (*…*) only,
    which is all the relay uses."""
    bold = False
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\":
            if index + 1 >= len(text):
                return "can't parse entities: text must not end with a backslash"
            index += 2
            continue
        if char == "*":
            bold = not bold
        elif char in RESERVED:
            return (f"can't parse entities: Character '{char}' is reserved and must be "
                    "escaped with the preceding '\\'")
        index += 1
    if bold:
        return "can't parse entities: can't find end of Bold entity"
    return None


def visible_text(text: str) -> str:
    """What the chat shows of a MarkdownV2 text: escapes and bold markers removed."""
    out, index = [], 0
    while index < len(text):
        if text[index] == "\\" and index + 1 < len(text):
            out.append(text[index + 1])
            index += 2
            continue
        if text[index] != "*":
            out.append(text[index])
        index += 1
    return "".join(out)


class FakeBotApi:
    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.updates: list[dict[str, Any]] = []
        self.next_update_id = 500
        self.next_message_id = 1
        self.sent: list[dict[str, Any]] = []  # sendMessage payloads accepted, in order
        self.calls: list[tuple[str, float, dict[str, Any]]] = []  # (method, time, payload)
        self.failures: dict[str, list[tuple[int, str, int | None]]] = {}
        self.new_update = asyncio.Event()
        self.message_sent = asyncio.Event()  # set on each accepted sendMessage
        self.runner: web.AppRunner | None = None
        self.url = ""

    # ------------------------------------------------------------------ control

    async def wait_sent(self, predicate: Callable[[list[dict[str, Any]]], bool]) -> None:
        """Until predicate(self.sent) holds, checked again after each accepted sendMessage."""
        while not predicate(self.sent):
            self.message_sent.clear()
            await self.message_sent.wait()

    async def start(self) -> FakeBotApi:
        app = web.Application()
        app.router.add_post("/bot{token}/{method}", self.handle)
        # handler_cancellation: a long poll whose client went away ends at once, as it does
        # on the real server, so the fake shuts down fast
        self.runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def fail_next(self, method: str, code: int, description: str,
                  retry_after: int | None = None, times: int = 1) -> None:
        self.failures.setdefault(method, []).extend([(code, description, retry_after)] * times)

    def user_says(self, chat_id: int, text: str, username: str | None = "bob",
                  reply_to: int | None = None, chat_type: str = "private") -> dict[str, Any]:
        """A person writes in a chat: queue the update Telegram would deliver."""
        message_id = self.next_message_id
        self.next_message_id += 1
        user: dict[str, Any] = {"id": 4242, "is_bot": False, "first_name": "Bob",
                                "language_code": "en"}
        if username:
            user["username"] = username
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat.update({"first_name": "Bob", "username": username})
        else:
            chat["title"] = "Ops"
        message: dict[str, Any] = {"message_id": message_id, "from": user, "chat": chat,
                                   "date": int(time.time()), "text": text}
        if reply_to is not None:
            original = next(m for m in self.sent_messages() if m["message_id"] == reply_to)
            message["reply_to_message"] = original
        update = {"update_id": self.next_update_id, "message": message}
        self.next_update_id += 1
        self.updates.append(update)
        self.new_update.set()
        return update

    def sent_messages(self) -> list[dict[str, Any]]:
        return [entry["result"] for entry in self.sent]

    def texts_in(self, chat_id: int) -> list[str]:
        return [entry["visible"] for entry in self.sent if entry["payload"]["chat_id"] == chat_id]

    # ------------------------------------------------------------------ protocol

    @staticmethod
    def error(code: int, description: str, retry_after: int | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=code)

    async def handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return self.error(401, "Unauthorized")
        payload = await request.json() if request.can_read_body else {}
        self.calls.append((method, time.monotonic(), payload))
        queued = self.failures.get(method)
        if queued:
            code, description, retry_after = queued.pop(0)
            return self.error(code, description, retry_after)
        if method == "getMe":
            return web.json_response({"ok": True, "result": BOT})
        if method == "getUpdates":
            return await self.get_updates(payload)
        if method == "sendMessage":
            return self.send_message(payload)
        return self.error(404, "Not Found")

    async def get_updates(self, payload: dict[str, Any]) -> web.Response:
        offset = int(payload.get("offset") or 0)
        timeout = float(payload.get("timeout") or 0)
        if offset:
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        deadline = time.monotonic() + timeout
        while not self.updates and time.monotonic() < deadline:
            self.new_update.clear()
            try:
                await asyncio.wait_for(self.new_update.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        limit = int(payload.get("limit") or 100)
        return web.json_response({"ok": True, "result": self.updates[:limit]})

    def send_message(self, payload: dict[str, Any]) -> web.Response:
        text = payload.get("text")
        chat_id = payload.get("chat_id")
        if not isinstance(text, str) or not text.strip():
            return self.error(400, "Bad Request: message text is empty")
        if not isinstance(chat_id, int):
            return self.error(400, "Bad Request: chat not found")
        visible = text
        if payload.get("parse_mode") == "MarkdownV2":
            problem = markdown_v2_error(text)
            if problem:
                return self.error(400, f"Bad Request: {problem}")
            visible = visible_text(text)
        if len(visible.encode("utf-16-le")) // 2 > 4096:
            return self.error(400, "Bad Request: message is too long")
        message_id = self.next_message_id
        self.next_message_id += 1
        result: dict[str, Any] = {
            "message_id": message_id,
            "from": {k: BOT[k] for k in ("id", "is_bot", "first_name", "username")},
            "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
            "date": int(time.time()),
            "text": visible,
        }
        reply = payload.get("reply_parameters")
        if isinstance(reply, dict):
            result["reply_to_message"] = {"message_id": reply.get("message_id")}
        self.sent.append({"payload": payload, "result": result, "visible": visible})
        self.message_sent.set()
        return web.json_response({"ok": True, "result": result})
