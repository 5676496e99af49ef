"""The Telegram channel against a fake Bot API on loopback that speaks the real protocol."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd.channels.telegram import TelegramChannel
from relayd.daemon.relay import Relay
from tests.conftest import make_settings
from tests.fake_telegram import FakeBotApi
from tests.helpers import register

CHAT = 1111
GROUP = -100222
STRANGER = 3333
TOKEN = "123456:TEST-token"


@pytest.fixture
async def bot() -> AsyncIterator[FakeBotApi]:
    fake = await FakeBotApi(TOKEN).start()
    yield fake
    await fake.close()


@pytest.fixture
async def start_relay(
    tmp_path: Path, bot: FakeBotApi
) -> AsyncIterator[Callable[[], Awaitable[Relay]]]:
    relays: list[Relay] = []

    async def start() -> Relay:
        relay = Relay(make_settings(
            tmp_path,
            telegram_bot_token=TOKEN,
            telegram_chat_ids=(CHAT, GROUP),
            telegram_api_url=bot.url,
        ))
        channel = telegram_of(relay)
        channel.poll_timeout = 2
        channel.base_delay = 0.05
        channel.max_delay = 0.2
        await relay.start()
        relays.append(relay)
        return relay

    yield start
    for relay in relays:
        if relay.http.runner is not None:
            await relay.stop()


def telegram_of(relay: Relay) -> TelegramChannel:
    channel = next(c for c in relay.ctx.channels if c.name == "telegram")
    assert isinstance(channel, TelegramChannel)
    return channel


async def eventually(check: Callable[[], Awaitable[Any]], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {check.__name__}")
        await asyncio.sleep(0.02)


async def inbox(http: aiohttp.ClientSession, agent: str) -> list[dict[str, Any]]:
    resp = await http.get("/api/messages", params={"for": agent})
    assert resp.status == 200
    messages: list[dict[str, Any]] = (await resp.json())["messages"]
    return messages


async def test_a_chat_message_reaches_the_agent_and_its_reply_comes_back(
    start_relay: Callable[[], Awaitable[Relay]], bot: FakeBotApi
) -> None:
    relay = await start_relay()
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "alice")
        asked = bot.user_says(CHAT, "@alice run the tests, please")

        async def alice_has_it() -> list[dict[str, Any]]:
            return await inbox(http, "alice")

        [received] = await eventually(alice_has_it)
        assert received["from"] == "telegram:bob"
        assert received["body"] == "run the tests, please"
        assert received["meta"]["telegram"]["chatId"] == CHAT
        # the person sees where it went, as a reply to what they wrote
        ack = await eventually(lambda: _async(bot.texts_in(CHAT)))
        assert ack[0] == f"#{received['id']} → alice (1 recipient)"

        # the agent answers the person directly; it lands in that chat, threaded
        resp = await http.post("/api/messages", json={
            "from": "alice", "to": "telegram:bob", "replyTo": received["id"],
            "subject": "CI (main)", "body": "All 12 tests pass. v1.2-rc_1 is *ready*!",
        })
        assert resp.status == 201, await resp.text()
        answer = await resp.json()
        assert answer["recipients"] == ["telegram:bob"]

        async def answer_posted() -> list[dict[str, Any]]:
            return [e for e in bot.sent if "All 12 tests pass" in e["visible"]]

        [posted] = await eventually(answer_posted)
        assert posted["payload"]["chat_id"] == CHAT
        assert posted["payload"]["parse_mode"] == "MarkdownV2"
        assert posted["visible"] == (
            f"#{answer['id']} from alice: CI (main)\nAll 12 tests pass. v1.2-rc_1 is *ready*!"
        )
        assert posted["payload"]["reply_parameters"]["message_id"] == (
            asked["message"]["message_id"]
        )
        assert posted["payload"]["chat_id"] != GROUP

        # a Telegram reply to the relayed answer becomes a relay reply to alice
        bot.user_says(CHAT, "thanks, ship it", reply_to=posted["result"]["message_id"])

        async def reply_arrived() -> list[dict[str, Any]]:
            return [m for m in await inbox(http, "alice") if m["body"] == "thanks, ship it"]

        [reply] = await eventually(reply_arrived)
        assert reply["replyTo"] == answer["id"]
        assert reply["threadId"] == received["id"]
        assert reply["from"] == "telegram:bob"

        # messages to the agent `telegram` go to every allowed chat
        resp = await http.post("/api/messages", json={
            "from": "ci", "to": "telegram", "body": "deploy finished"})
        assert resp.status == 201

        async def in_both_chats() -> set[int]:
            chats = {e["payload"]["chat_id"] for e in bot.sent if "deploy finished" in e["visible"]}
            return chats if chats == {CHAT, GROUP} else set()

        await eventually(in_both_chats)
        await asyncio.sleep(0.2)
        assert len([e for e in bot.sent if "deploy finished" in e["visible"]]) == 2

        agent = await (await http.get("/api/agents/telegram")).json()
        assert agent["provider"] == "telegram"
        channels = (await (await http.get("/api/channels")).json())["channels"]
        state = next(c for c in channels if c["name"] == "telegram")
        assert state["configured"] is True and state["connected"] is True
        assert state["state"] == "connected" and state["kind"] == "bridge"
        assert TOKEN not in str(channels)


async def _async(value: Any) -> Any:
    return value


async def test_chats_not_listed_are_ignored(
    start_relay: Callable[[], Awaitable[Relay]], bot: FakeBotApi
) -> None:
    relay = await start_relay()
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "alice")
        bot.user_says(STRANGER, "@alice transfer the funds", username="mallory")
        bot.user_says(GROUP, "@alice second", chat_type="group")

        async def one_arrived() -> list[dict[str, Any]]:
            return await inbox(http, "alice")

        messages = await eventually(one_arrived)
        await asyncio.sleep(0.2)
        assert [m["body"] for m in await inbox(http, "alice")] == ["second"]
        assert messages[0]["from"] == "telegram:bob"
        assert not bot.texts_in(STRANGER)
        assert (await http.get("/api/agents/telegram:mallory")).status == 404
        assert telegram_of(relay).counts["ignored"] == 1


async def test_a_restart_neither_repeats_nor_skips_an_update(
    start_relay: Callable[[], Awaitable[Relay]], bot: FakeBotApi
) -> None:
    relay = await start_relay()
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "alice")
        bot.user_says(CHAT, "@alice one")
        await eventually(lambda: inbox(http, "alice"))
    await relay.stop()
    bot.user_says(CHAT, "@alice two")  # written while the relay is down
    bot.user_says(CHAT, "@alice three")
    assert [u["message"]["text"] for u in bot.updates][-2:] == ["@alice two", "@alice three"]

    relay = await start_relay()
    async with aiohttp.ClientSession(base_url=relay.url) as http:

        async def all_three() -> list[dict[str, Any]]:
            messages = await inbox(http, "alice")
            return messages if len(messages) >= 3 else []

        await eventually(all_three)
        await asyncio.sleep(0.3)
        assert [m["body"] for m in await inbox(http, "alice")] == ["one", "two", "three"]
        offsets = [p["offset"] for method, _, p in bot.calls if method == "getUpdates"]
        assert offsets[-1] == bot.next_update_id  # everything confirmed


async def test_429_retry_after_is_honoured_and_an_outage_loses_nothing(
    start_relay: Callable[[], Awaitable[Relay]], bot: FakeBotApi
) -> None:
    bot.fail_next("getUpdates", 502, "Bad Gateway", times=2)
    bot.fail_next("sendMessage", 429, "Too Many Requests: retry after 1", retry_after=1)
    relay = await start_relay()
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        resp = await http.post("/api/messages", json={
            "from": "ci", "to": "telegram", "body": "build 41 failed"})
        assert resp.status == 201

        async def delivered() -> list[Any]:
            return [e for e in bot.sent if "build 41 failed" in e["visible"]]

        async def in_both_chats() -> bool:
            return len(await delivered()) == 2

        await eventually(in_both_chats)
        attempts = [t for m, t, p in bot.calls
                    if m == "sendMessage" and "build 41" in p.get("text", "")]
        assert len(attempts) == 3  # 429 for the first chat, then both chats
        assert attempts[1] - attempts[0] >= 0.95  # waited retry_after
        assert len(await delivered()) == 2

        channels = (await (await http.get("/api/channels")).json())["channels"]
        state = next(c for c in channels if c["name"] == "telegram")
        assert "429" in state["lastError"] or "Bad Gateway" in state["lastError"]

        # updates written during the getUpdates outage still arrive
        await register(http, "alice")
        bot.user_says(CHAT, "@alice still there?")
        [message] = await eventually(lambda: inbox(http, "alice"))
        assert message["body"] == "still there?"


async def test_long_bodies_are_split_at_the_limit_and_escaped(
    start_relay: Callable[[], Awaitable[Relay]], bot: FakeBotApi
) -> None:
    relay = await start_relay()
    body = "".join(f"line {n}: a_b*c [x](y) ~`>#+-=|{{}}.! 🚀\n" for n in range(400))
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        await register(http, "alice")
        resp = await http.post("/api/messages", json={
            "from": "alice", "to": "telegram", "body": body})
        assert resp.status == 201

        async def all_parts() -> list[dict[str, Any]]:
            parts = [e for e in bot.sent if e["payload"]["chat_id"] == CHAT]
            return parts if len(parts) >= 2 and "399" in parts[-1]["visible"] else []

        parts = await eventually(all_parts)
    assert all(e["payload"]["parse_mode"] == "MarkdownV2" for e in parts)
    assert all(len(e["visible"].encode("utf-16-le")) // 2 <= 4096 for e in parts)
    pieces = [e["visible"].split("\n", 1)[1] for e in parts]
    assert "".join(pieces) == body
    count = len(parts)
    assert parts[1]["visible"].startswith(f"#1 (2/{count})")


async def test_unconfigured_telegram_is_listed_and_idle(relay: Relay) -> None:
    async with aiohttp.ClientSession(base_url=relay.url) as http:
        channels = (await (await http.get("/api/channels")).json())["channels"]
        assert channels[0] == {**channels[0], "name": "telegram", "configured": False,
                               "connected": False, "state": "not configured"}
        assert (await http.get("/api/agents/telegram")).status == 404
