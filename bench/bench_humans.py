"""The people-facing paths: dashboard first paint and Telegram round trips.

- Dashboard: time from navigation to the first agent row and message on screen in headless
  Chromium (Playwright, Debian's chromium), with the snapshot embedded in the page (a
  token-less relay) against the baseline of the same page fetching it (a relay with a token,
  the token already in the tab's sessionStorage), same data, same run, alternating rounds.
- Telegram: a chat message (fake Bot API on loopback) to the agent's inbox, and an agent's
  message to the chat, p50/p99, against the baseline of a plain POST /api/messages
  answered (the relay's own send latency) in the same run.

    python bench/bench_humans.py --rounds 5 --messages 50
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayd.config.settings import Settings
from relayd.daemon.relay import Relay
from tests.fake_telegram import FakeBotApi

TOKEN = "bench-token-0123456789"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--disable-background-networking", "--no-first-run"]


def settings(tmp: Path, name: str, **extra: Any) -> Settings:
    return Settings(host="127.0.0.1", port=0, db_path=tmp / f"{name}.db",
                    socket_path=tmp / f"{name}.sock", config_path=tmp / "none.toml", **extra)


async def seed(relay: Relay, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(base_url=relay.url, headers=headers) as http:
        for n in range(50):
            await http.post("/api/agents", json={"id": f"agent-{n:02d}", "tags": ["t"]})
        for n in range(200):
            await http.post("/api/messages", json={"from": "ci", "to": f"agent-{n % 50:02d}",
                                                   "body": f"message {n}"})


async def first_paint(browser: Any, relay: Relay, token: str | None) -> float:
    context = await browser.new_context()
    if token:
        await context.add_init_script(
            f"sessionStorage.setItem('agent-relay.token', {token!r})")
    page = await context.new_page()
    started = time.perf_counter()
    await page.goto(relay.url + "/", wait_until="commit")
    await page.wait_for_selector('#agents tr[data-agent="agent-00"]')
    await page.wait_for_selector("#messages li")
    elapsed = time.perf_counter() - started
    await context.close()
    return elapsed * 1000


async def bench_dashboard(tmp: Path, rounds: int) -> None:
    from playwright.async_api import async_playwright

    open_relay = Relay(settings(tmp, "open"))
    locked = Relay(settings(tmp, "locked", token=TOKEN))
    await open_relay.start()
    await locked.start()
    try:
        await seed(open_relay, None)
        await seed(locked, TOKEN)
        embedded: list[float] = []
        fetched: list[float] = []
        async with async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
            await first_paint(browser, open_relay, None)  # warm-up
            for index in range(rounds):  # alternate which goes first
                order = [(embedded, open_relay, None), (fetched, locked, TOKEN)]
                for into, relay, token in order if index % 2 == 0 else order[::-1]:
                    into.append(await first_paint(browser, relay, token))
            await browser.close()
    finally:
        await open_relay.stop()
        await locked.stop()
    a, b = statistics.median(embedded), statistics.median(fetched)
    print(f"dashboard first paint (50 agents, 200 messages), median of {rounds}:")
    print(f"  embedded snapshot   {a:7.1f} ms")
    print(f"  fetched (baseline)  {b:7.1f} ms   ratio {a / b:.2f}")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bench_telegram(tmp: Path, count: int) -> None:
    bot = await FakeBotApi("1:bench").start()
    relay = Relay(settings(tmp, "tg", telegram_bot_token="1:bench",
                           telegram_chat_ids=(42,), telegram_api_url=bot.url))
    for channel in relay.ctx.channels:
        channel.poll_timeout = 5  # type: ignore[attr-defined]
    await relay.start()
    inbound: list[float] = []
    outbound: list[float] = []
    plain: list[float] = []
    try:
        async with aiohttp.ClientSession(base_url=relay.url) as http:
            await http.post("/api/agents", json={"id": "alice"})
            for n in range(count):
                cursor = (await (await http.get("/api/messages/cursor")).json())["cursor"]
                started = time.perf_counter()
                bot.user_says(42, f"@alice ping {n}")
                while True:
                    answer = await (await http.get("/api/messages", params={
                        "for": "alice", "since": cursor, "wait": 5})).json()
                    if any(m["body"] == f"ping {n}" for m in answer["messages"]):
                        break
                    cursor = answer["cursor"]
                inbound.append((time.perf_counter() - started) * 1000)

                before = len(bot.sent)
                started = time.perf_counter()
                await http.post("/api/messages", json={"from": "alice", "to": "telegram",
                                                       "body": f"pong {n}"})
                await bot.wait_sent(lambda sent, n=n, before=before: any(
                    f"pong {n}" in e["visible"] for e in sent[before:]))
                outbound.append((time.perf_counter() - started) * 1000)

                started = time.perf_counter()
                await http.post("/api/messages", json={"from": "x", "to": "alice",
                                                       "body": "baseline"})
                plain.append((time.perf_counter() - started) * 1000)
    finally:
        await relay.stop()
        await bot.close()
    print(f"telegram, {count} messages (p50 / p99):")
    print(f"  chat -> agent inbox     {pct(inbound, .5):6.1f} / {pct(inbound, .99):6.1f} ms")
    print(f"  agent -> chat           {pct(outbound, .5):6.1f} / {pct(outbound, .99):6.1f} ms")
    print(f"  POST /api/messages (baseline) {pct(plain, .5):6.1f} / {pct(plain, .99):6.1f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        await bench_dashboard(Path(tmp), args.rounds)
        await bench_telegram(Path(tmp), args.messages)


if __name__ == "__main__":
    asyncio.run(main())
