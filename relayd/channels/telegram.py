"""The Telegram channel: a bot that carries messages between Telegram chats and the relay.

- Inbound: long polling with ``getUpdates``. Each update from an allowed chat is turned into a
  relay message in one transaction with the next offset (``Store.channel_receive``), so a
  restart neither repeats nor skips an update. ``@TARGET text`` sends to any target of the
  API; a Telegram reply to a relayed message becomes a relay reply (``replyTo``), to the
  parent's sender unless the text names another ``@TARGET``. The sender is
  ``telegram:<username>`` (``telegram:<user id>`` without one), registered as an agent of
  provider ``telegram`` so agents can answer it directly.
- Outbound: what the agent ``telegram`` receives is posted to every allowed chat; what a
  ``telegram:<user>`` agent receives, to the chat that user last wrote from. The agents'
  unread inboxes are the outbox: a message is marked read once every chat has it, and each
  posted piece is linked to it, so an outage or a restart resumes where it stopped.
- Errors: any failure of the Bot API is retried with exponential backoff (jittered), a 429
  waits its ``retry_after``; the state, with the last error, is in GET /api/channels.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from typing import TYPE_CHECKING, Any

import aiohttp

from relayd import __version__
from relayd.bus import Subscription
from relayd.channels import telegram_format
from relayd.domain.models import Event, Message, iso, now_ms
from relayd.domain.targets import TargetError, parse_target
from relayd.errors import ApiError
from relayd.storage.base import AgentFilter, ChannelLink, MessageDraft, MessageQuery

if TYPE_CHECKING:
    from relayd.daemon.context import Context

log = logging.getLogger("relayd.telegram")

NAME = "telegram"
AGENT_ID = "telegram"
USER_PREFIX = "telegram:"
OFFSET_KEY = "offset"
TARGET_RE = re.compile(r"@(\S+)\s*(.*)", re.DOTALL)
HELP = (
    "Write @TARGET text to message an agent (TARGET: an agent id, tag:x, cap:x, label:x, "
    "machine:x or broadcast), or reply to a relayed message to answer it."
)


class BotApiError(Exception):
    """The Bot API answered ``{ok: false, error_code, description, parameters?}``."""

    def __init__(self, method: str, code: int, description: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{method}: {code} {description}")
        self.method = method
        self.code = code
        self.description = description
        self.retry_after = retry_after

    @property
    def permanent(self) -> bool:
        """A refusal that retrying the same request will not change (bad chat, blocked bot)."""
        return self.code in (400, 403)


class BotApi:
    """A thin client: POST JSON to ``{api}/bot{token}/{method}``, answer ``result``."""

    def __init__(self, base_url: str, token: str, session: aiohttp.ClientSession) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.session = session

    async def call(
        self, method: str, payload: dict[str, Any],
        timeout: float = 30.0,  # noqa: ASYNC109 aiohttp's per-request ClientTimeout
    ) -> Any:
        url = f"{self.base_url}/bot{self.token}/{method}"
        async with self.session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=timeout)
        ) as response:
            try:
                data = await response.json(content_type=None)
            except ValueError:
                data = None
            status = response.status
        if not isinstance(data, dict):
            raise BotApiError(method, status, f"HTTP {status} without a Bot API answer")
        if data.get("ok") is True:
            return data.get("result")
        parameters = data.get("parameters") if isinstance(data.get("parameters"), dict) else {}
        retry_after = parameters.get("retry_after") if parameters else None
        code = data.get("error_code")
        raise BotApiError(
            method,
            code if isinstance(code, int) else status,
            str(data.get("description") or "no description"),
            float(retry_after) if isinstance(retry_after, int | float) else None,
        )


def backoff_seconds(failures: int, base: float, cap: float) -> float:
    ceiling = min(cap, base * 2 ** max(0, failures - 1))
    return random.uniform(ceiling / 2, ceiling)


class TelegramChannel:
    name = NAME

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        settings = ctx.settings
        self.token = settings.telegram_bot_token
        self.chats: tuple[int, ...] = settings.telegram_chat_ids
        self.api_url = settings.telegram_api_url
        self.poll_timeout = 25  # seconds getUpdates holds the request open
        self.base_delay = 1.0  # first retry after an error; doubles up to max_delay
        self.max_delay = 60.0
        self.outbox_interval = 5.0  # a safety net: message.new events wake the outbox
        self.connected = False
        self.last_error: str | None = None
        self.last_error_at: int | None = None
        self.bot_username: str | None = None
        self.offset = 0
        self.counts = {"received": 0, "ignored": 0, "sent": 0}
        self._api: BotApi | None = None
        self._session: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: Subscription | None = None
        self._known_users: dict[str, int] = {}  # telegram:<user> agent id -> its chat

    @property
    def configured(self) -> bool:
        return bool(self.token)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if not self.configured:
            return
        assert self.token is not None
        if not self.chats:
            log.warning("telegram: no AGENT_RELAY_TELEGRAM_CHAT_IDS; every chat is ignored")
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"agent-relay/{__version__}"}
        )
        self._api = BotApi(self.api_url, self.token, self._session)
        self._subscription = self.ctx.bus.subscribe(_for_telegram, maxsize=100)
        self._tasks = [
            asyncio.create_task(self._guard(self._poll_loop), name="telegram-poll"),
            asyncio.create_task(self._guard(self._outbox_loop), name="telegram-outbox"),
            asyncio.create_task(self._guard(self._heartbeat_loop), name="telegram-heartbeat"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._subscription is not None:
            self.ctx.bus.unsubscribe(self._subscription)
            self._subscription = None
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self.configured:
            with contextlib.suppress(ApiError):
                await self.ctx.store.heartbeat(AGENT_ID, "offline")
        self.connected = False

    def state(self) -> dict[str, Any]:
        if not self.configured:
            label = "not configured"
        elif self.connected:
            label = "connected"
        else:
            label = "error" if self.last_error else "connecting"
        return {
            "name": NAME,
            "kind": "bridge",
            "configured": self.configured,
            "connected": self.connected,
            "state": label,
            "lastError": self.last_error,
            "lastErrorAt": iso(self.last_error_at),
            "agent": AGENT_ID,
            "bot": self.bot_username,
            "chats": len(self.chats),
            "offset": self.offset,
            **self.counts,
        }

    # ------------------------------------------------------------------ loops

    async def _guard(self, loop: Any) -> None:
        """Run a loop forever: an unexpected error is logged and the loop restarts later."""
        failures = 0
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug must not end the channel for good
                failures += 1
                self._failed(f"internal error: {exc!r}")
                log.exception("telegram: %s failed", loop.__name__)
                await asyncio.sleep(backoff_seconds(failures, self.base_delay, self.max_delay))

    async def _poll_loop(self) -> None:
        assert self._api is not None
        await self._register(AGENT_ID, {"label": "Telegram", "capabilities": ["chat"]})
        self.offset = int(await self.ctx.store.channel_state(NAME, OFFSET_KEY) or 0)
        failures = 0
        while True:
            if not await self.ctx.store.hold_job_lock("telegram:poll"):
                await asyncio.sleep(2.0)  # another replica polls (PostgreSQL); take over if it dies
                continue
            try:
                if self.bot_username is None:
                    me = await self._api.call("getMe", {})
                    self.bot_username = (me or {}).get("username")
                updates = await self._api.call(
                    "getUpdates",
                    {"offset": self.offset, "timeout": self.poll_timeout,
                     "allowed_updates": ["message"]},
                    timeout=self.poll_timeout + 15,
                )
                self._succeeded()
                failures = 0
                for update in updates or []:
                    await self._take(update)
            except (BotApiError, aiohttp.ClientError, TimeoutError, ApiError) as exc:
                failures += 1
                await self._pause(exc, failures)

    async def _outbox_loop(self) -> None:
        failures = 0
        while True:
            try:
                await self._drain_outbox()
                failures = 0
            except (BotApiError, aiohttp.ClientError, TimeoutError, ApiError) as exc:
                failures += 1
                await self._pause(exc, failures)
                continue
            assert self._subscription is not None
            await self._subscription.next_batch(self.outbox_interval)
            self._subscription.reset_overflow()

    async def _heartbeat_loop(self) -> None:
        every = max(0.05, self.ctx.settings.stale_ttl_ms / 3000)
        while True:
            await asyncio.sleep(every)
            with contextlib.suppress(ApiError):
                if await self.ctx.store.heartbeat(AGENT_ID, None) is None:
                    await self._register(AGENT_ID, {"label": "Telegram", "capabilities": ["chat"]})
                for agent_id in list(self._known_users):
                    if await self.ctx.store.heartbeat(agent_id, None) is None:
                        self._known_users.pop(agent_id, None)

    async def _pause(self, exc: Exception, failures: int) -> None:
        retry_after = exc.retry_after if isinstance(exc, BotApiError) else None
        self._failed(self._describe(exc))
        delay = retry_after if retry_after is not None else backoff_seconds(
            failures, self.base_delay, self.max_delay
        )
        log.warning("telegram: %s; retrying in %.1f s", self.last_error, delay)
        await asyncio.sleep(delay)

    def _describe(self, exc: Exception) -> str:
        text = str(exc) or type(exc).__name__
        return text.replace(self.token, "<token>") if self.token else text

    def _failed(self, error: str) -> None:
        self.connected = False
        self.last_error = error
        self.last_error_at = now_ms()

    def _succeeded(self) -> None:
        self.connected = True

    # ------------------------------------------------------------------ inbound

    async def _take(self, update: dict[str, Any]) -> None:
        """One update: a relay message (with the new offset, atomically), or just the offset."""
        update_id = int(update["update_id"])
        next_offset = {OFFSET_KEY: str(update_id + 1)}
        message = update.get("message")
        chat = (message or {}).get("chat", {}).get("id")
        text = (message or {}).get("text")
        if not isinstance(message, dict) or chat not in self.chats or not isinstance(text, str):
            self.counts["ignored"] += 1
            await self._advance(next_offset)
            return
        assert isinstance(chat, int)
        sender = _sender_id(message.get("from") or {})
        target, body, reply_to = await self._address(chat, sender, text, message)
        if target is None or not body:
            await self._advance(next_offset)
            await self._say(chat, HELP, message["message_id"])
            return
        await self._know_user(sender, chat, message.get("from") or {})
        draft = MessageDraft(
            sender=sender,
            to=target,
            body=body,
            reply_to=reply_to,
            meta={"telegram": {"chatId": chat, "messageId": message["message_id"],
                               "updateId": update_id}},
            sent_by=f"channel:{NAME}",  # the relay's own bridge, not an API principal
        )
        try:
            result = await self.ctx.store.channel_receive(
                NAME, draft, [(str(chat), str(message["message_id"]))], next_offset
            )
        except ApiError as exc:
            if exc.status >= 500:
                raise  # storage trouble: retry this update later, offset unchanged
            await self._advance(next_offset)
            await self._say(chat, f"Not sent: {exc.message}", message["message_id"])
            return
        self.offset = update_id + 1
        self.counts["received"] += 1
        count = len(result.recipients)
        await self._say(
            chat,
            f"#{result.message.id} → {target} ({count} recipient{'' if count == 1 else 's'})",
            message["message_id"],
            link_to=result.message.id,
        )

    async def _advance(self, state: dict[str, str]) -> None:
        await self.ctx.store.set_channel_state(NAME, OFFSET_KEY, state[OFFSET_KEY])
        self.offset = int(state[OFFSET_KEY])

    async def _address(
        self, chat: int, sender: str, text: str, message: dict[str, Any]
    ) -> tuple[str | None, str, int | None]:
        """(target, body, replyTo) of a chat message; target None when it names none."""
        text = text.strip()
        match = TARGET_RE.fullmatch(text)
        if match and self.bot_username and match.group(1).lower() == f"{self.bot_username}".lower():
            text = match.group(2).strip()  # "@thisbot @alice hi" in a group
            match = TARGET_RE.fullmatch(text)
        target: str | None = None
        body = text
        if match:
            target, body = match.group(1), match.group(2).strip()
            try:
                parse_target(target)
            except TargetError:
                target, body = None, text
        reply_to: int | None = None
        parent_ref = (message.get("reply_to_message") or {}).get("message_id")
        if parent_ref is not None:
            reply_to = await self.ctx.store.channel_message_for(NAME, str(chat), str(parent_ref))
            if reply_to is not None and target is None:
                parent = await self.ctx.store.get_message(reply_to)
                target = _answer_to(parent, sender)
        return target, body, reply_to

    async def _know_user(self, agent_id: str, chat: int, user: dict[str, Any]) -> None:
        if self._known_users.get(agent_id) == chat:
            return
        label = " ".join(str(user[k]) for k in ("first_name", "last_name") if user.get(k))
        await self._register(agent_id, {
            "label": label or None,
            "capabilities": [],
            "meta": {"telegram": {"chatId": chat, "userId": user.get("id"),
                                  "username": user.get("username")}},
        })
        self._known_users[agent_id] = chat

    async def _register(self, agent_id: str, fields: dict[str, Any]) -> None:
        await self.ctx.store.register_agent(
            {"id": agent_id, "provider": NAME, "machine": "telegram", **fields}
        )

    async def _say(self, chat: int, text: str, reply_to: int | None,
                   link_to: int | None = None) -> None:
        """A short notice in the chat; best effort (a lost notice loses no relay message)."""
        assert self._api is not None
        payload: dict[str, Any] = {"chat_id": chat, "text": text}
        if reply_to is not None:
            payload["reply_parameters"] = {"message_id": reply_to,
                                           "allow_sending_without_reply": True}
        try:
            posted = await self._api.call("sendMessage", payload)
            if link_to is not None and isinstance(posted, dict) and "message_id" in posted:
                await self.ctx.store.channel_link(
                    NAME, ChannelLink(str(chat), str(posted["message_id"]), link_to, part=-1)
                )
        except (BotApiError, aiohttp.ClientError, TimeoutError, ApiError) as exc:
            log.info("telegram: notice to chat %s not sent: %s", chat, self._describe(exc))

    # ------------------------------------------------------------------ outbound

    async def _drain_outbox(self) -> None:
        if self._api is None or not await self.ctx.store.hold_job_lock("telegram:outbox"):
            return  # (with replicas on PostgreSQL, one posts to the chats)
        readers = [AGENT_ID, *await self._user_agents()]
        for reader in readers:
            while True:
                pending = await self.ctx.store.list_messages(
                    MessageQuery(reader=reader, unread=True, limit=50)
                )
                if not pending:
                    break
                for message in pending:
                    if message.sender == AGENT_ID or message.sender.startswith(USER_PREFIX):
                        pass  # what people wrote is not echoed back to the chats
                    else:
                        for chat in await self._chats_for(reader):
                            await self._post(message, chat)
                    await self.ctx.store.set_read(message.id, reader, True)
                if len(pending) < 50:
                    break

    async def _user_agents(self) -> list[str]:
        agents = await self.ctx.store.list_agents(AgentFilter())
        found = []
        for agent in agents:
            if agent.provider == NAME and agent.id.startswith(USER_PREFIX):
                found.append(agent.id)
                chat = (agent.meta.get("telegram") or {}).get("chatId")
                if isinstance(chat, int):
                    self._known_users.setdefault(agent.id, chat)
        return found

    async def _chats_for(self, reader: str) -> list[int]:
        if reader == AGENT_ID:
            return list(self.chats)
        chat = self._known_users.get(reader)
        return [chat] if chat in self.chats else []

    async def _post(self, message: Message, chat: int) -> None:
        """Post every piece of `message` the chat does not have yet."""
        assert self._api is not None
        store = self.ctx.store
        posted = {link.part for link in await store.channel_links_of(NAME, message.id, str(chat))}
        sent_by = message.to_json().get("sentBy")
        parts = telegram_format.render(
            message.id, message.sender, message.subject, message.body,
            sent_by if isinstance(sent_by, str) else None,
        )
        reply_ref: int | None = None
        if message.reply_to is not None:
            links = await store.channel_links_of(NAME, message.reply_to, str(chat))
            # the person's own message (part 0) before the relay's notice about it (-1)
            refs = [link.external_id for link in sorted(links, key=lambda k: k.part < 0)
                    if link.external_id.isdigit()]
            reply_ref = int(refs[0]) if refs else None
        for index, part in enumerate(parts):
            if index in posted:
                continue
            payload: dict[str, Any] = {
                "chat_id": chat,
                "text": part.markdown(),
                "parse_mode": "MarkdownV2",
                "link_preview_options": {"is_disabled": True},
            }
            if index == 0 and reply_ref is not None:
                payload["reply_parameters"] = {"message_id": reply_ref,
                                               "allow_sending_without_reply": True}
            external = await self._send_part(payload, part, message.id, chat)
            await store.channel_link(NAME, ChannelLink(str(chat), external, message.id, index))
            self.counts["sent"] += 1
        self._succeeded()

    async def _send_part(self, payload: dict[str, Any], part: telegram_format.Part,
                         message_id: int, chat: int) -> str:
        """The Telegram message id of the posted piece; a permanent refusal is recorded as
        done (retrying would only repeat it), anything else raises for a retry."""
        assert self._api is not None
        try:
            result = await self._api.call("sendMessage", payload)
        except BotApiError as exc:
            if exc.code == 400 and "parse" in exc.description.lower():
                payload = {k: v for k, v in payload.items() if k != "parse_mode"}
                payload["text"] = part.plain()
                result = await self._api.call("sendMessage", payload)
            elif exc.permanent:
                self._failed(f"message {message_id} to chat {chat}: {self._describe(exc)}")
                log.warning("telegram: %s (not retried)", self.last_error)
                return f"refused:{message_id}:{random.getrandbits(32)}"
            else:
                raise
        if not isinstance(result, dict) or "message_id" not in result:
            raise BotApiError("sendMessage", 502, "answer without message_id")
        return str(result["message_id"])


def _for_telegram(event: Event) -> bool:
    audience = event.audience
    return event.type == "message.new" and audience is not None and any(
        a == AGENT_ID or a.startswith(USER_PREFIX) for a in audience
    )


def _sender_id(user: dict[str, Any]) -> str:
    username = user.get("username")
    if isinstance(username, str) and re.fullmatch(r"[A-Za-z0-9_]{1,64}", username):
        return f"{USER_PREFIX}{username}"
    return f"{USER_PREFIX}{user.get('id', 'unknown')}"


def _answer_to(parent: Message | None, sender: str) -> str | None:
    """Whom a Telegram reply to `parent` goes to: its sender, or, when the person replies to
    their own message, whom that one went to."""
    if parent is None:
        return None
    return parent.to if parent.sender == sender else parent.sender
