"""The dashboard at `/` in a real headless Chromium, driven by Playwright.

Debian's chromium is the browser (Playwright's own download is not used). Each view is opened
at desktop and phone sizes, a screenshot of each is saved in the test's tmp dir, and the page
must never scroll sideways. Every request the page makes is recorded to prove the token never
lands in a URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd.daemon.relay import Relay

try:
    from playwright.async_api import Browser, Page, Request, Route, ViewportSize, async_playwright
except ImportError:  # pragma: no cover - the test extras install it
    async_playwright = None  # type: ignore[assignment]  # the skip below names what is missing

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None or async_playwright is None,
    reason="needs Debian's chromium (apt-get install chromium) and playwright (test extras)",
)
TOKEN = "dash-secret-7f3a9c41"
INTEGRATION_TOKEN = "dash-integration-token-1"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


# --------------------------------------------------------------------------- the browser


class Tab:
    """One page plus what it did: its requests, and any script or console error."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots
        self.requests: list[Request] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on("console", self._console)

    def _console(self, message: Any) -> None:
        # a 401 answer is logged by the network layer: that one is expected
        if message.type == "error" and "401" not in message.text:
            self.errors.append(message.text)

    async def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        assert path.stat().st_size > 1000
        return path

    async def fits(self, width: int) -> None:
        scroll = await self.page.evaluate("document.scrollingElement.scrollWidth")
        assert scroll <= width, f"the page scrolls sideways: {scroll} > {width}"

    def api_requests(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.url.split("?")[0].endswith(path)]


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    assert async_playwright is not None and CHROMIUM is not None
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def tab(chromium: Browser, shots: Path,
              viewport: ViewportSize = DESKTOP) -> AsyncIterator[Tab]:
    context = await chromium.new_context(viewport=viewport)  # a fresh sessionStorage
    try:
        yield Tab(await context.new_page(), shots)
    finally:
        await context.close()


# --------------------------------------------------------------------------- API helpers


@contextlib.asynccontextmanager
async def api_client(relay: Relay, token: str | None = None
                     ) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(base_url=relay.url, headers=headers) as session:
        yield session


async def call(api: aiohttp.ClientSession, method: str, path: str, **body: Any) -> Any:
    async with api.request(method, path, json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json() if response.status != 204 else None


async def register(api: aiohttp.ClientSession, agent_id: str, **fields: Any) -> None:
    await call(api, "POST", "/api/agents", id=agent_id, **fields)


async def send(api: aiohttp.ClientSession, **message: Any) -> dict[str, Any]:
    sent: dict[str, Any] = await call(api, "POST", "/api/messages", **message)
    return sent


async def seed(relay: Relay) -> dict[str, Any]:
    """Agents, a thread read by one of its recipients, a channel, a pair that talked, and a
    claimed task."""
    async with api_client(relay) as api:
        agents: dict[str, dict[str, Any]] = {
            "alice": {"tags": ["ci"], "label": "Alice"},
            "bob": {"capabilities": ["review"], "machine": "box-b"},
            "carol-with-a-rather-long-agent-identifier-0123456789": {"project": "relay"},
            "dave": {"tags": ["ci"]},
        }
        for agent, fields in agents.items():
            await register(api, agent, **fields)
        carol = "carol-with-a-rather-long-agent-identifier-0123456789"
        root = await send(api, **{"from": "alice", "to": "bob", "subject": "PR #12",
                                  "body": "please review PR #12"})
        await call(api, "PATCH", f"/api/messages/{root['id']}", agent="bob", read=True)
        reply = await send(api, **{"from": "bob", "to": "alice", "replyTo": root["id"],
                                   "body": "looks good, one nit"})
        await send(api, **{"from": "ci", "to": "tag:ci", "channel": "builds",
                           "body": "build 41 passed " + "x" * 300})
        pair = await call(api, "POST", "/api/pairs", **{"from": carol, "to": "id:dave",
                                                        "objective": "debug the flaky test"})
        await call(api, "POST", f"/api/pairs/{pair['id']}/accept", agent="dave")
        for sender, body in ((carol, "can you run it twice?"), ("dave", "ran it: passes")):
            await call(api, "POST", f"/api/pairs/{pair['id']}/messages",
                       **{"from": sender, "body": body})
    async with api_client(relay, INTEGRATION_TOKEN) as monitor:
        event = await call(monitor, "POST", "/api/integrations/events", type="alert",
                           title="disk almost full", target="bob", severity="high")
    async with api_client(relay) as api:
        task = event["task"]
        await call(api, "POST", f"/api/tasks/{task['id']}/claim", agent="bob")
        await call(api, "PATCH", f"/api/tasks/{task['id']}/status", agent="bob",
                   status="in_progress", progress="cleaning /var/log")
    return {"root": root, "reply": reply, "pair": pair, "task": task, "carol": carol}


INTEGRATIONS = json.dumps([{"name": "monitor", "token": INTEGRATION_TOKEN,
                            "scopes": ["tasks:create", "events:create"]}])


# --------------------------------------------------------------------------- tests


async def test_dashboard_assets_keep_a_strict_policy(relay: Relay) -> None:
    async with api_client(relay) as http:
        async with http.get("/") as page:
            policy = page.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in policy and "script-src 'self'" in policy
            text = await page.text()
            # the only inline element is a JSON data block, which is never executed
            assert '<script src="/static/app.js" defer></script>' in text
            assert '<script type="application/json" id="bootstrap">' in text
        async with http.get("/static/app.js") as script:
            assert script.status == 200
            assert script.content_type == "text/javascript"
            assert "Last-Event-ID" in await script.text()
        async with http.get("/static/app.css") as style:
            assert style.status == 200 and style.content_type == "text/css"
        for missing in ("/static/nope.js", "/static/index.html", "/static/..%2Fapp.py"):
            async with http.get(missing) as response:
                assert response.status == 404, missing
                assert (await response.json())["code"] == "not_found"


async def test_the_embedded_snapshot_cannot_break_out_of_its_block(
    relay_factory: Callable[..., Any],
) -> None:
    relay: Relay = await relay_factory()
    async with api_client(relay) as api:
        await register(api, "x")
        await send(api, **{"from": "evil", "to": "x",
                           "body": "</script><script>alert(1)</script><!-- & \u2028"})
        async with api.get("/") as response:
            page = await response.text()
    block = page.split('id="bootstrap">', 1)[1].split("</script>", 1)[0]
    data = json.loads(block)
    assert data["messages"][0]["body"].startswith("</script><script>")
    assert "<" not in block and ">" not in block


async def test_a_token_protected_page_embeds_nothing(relay_factory: Callable[..., Any]) -> None:
    relay: Relay = await relay_factory(token=TOKEN)
    async with api_client(relay, TOKEN) as api:
        await register(api, "hidden-agent")
        async with api.get("/") as response:
            page = await response.text()
    assert '<script type="application/json" id="bootstrap">null</script>' in page
    assert "hidden-agent" not in page


@needs_browser
async def test_first_paint_needs_no_second_round_trip(
    relay_factory: Callable[..., Any], tmp_path: Path
) -> None:
    relay: Relay = await relay_factory()
    async with api_client(relay) as api:
        await register(api, "early-bird", label="Early")
        await send(api, **{"from": "ci", "to": "early-bird", "body": "first words"})

    async def slow(route: Route) -> None:  # every API answer takes 3 s
        await asyncio.sleep(3)
        with contextlib.suppress(Exception):
            await route.continue_()

    async with browser() as chromium, tab(chromium, tmp_path) as page:
        await page.page.route("**/api/**", slow)
        started = time.monotonic()
        await page.page.goto(relay.url + "/", wait_until="commit")
        await page.page.wait_for_selector('#agents tr[data-agent="early-bird"]', timeout=2000)
        await page.page.wait_for_selector("#messages li:has-text('first words')", timeout=500)
        assert time.monotonic() - started < 2.5  # before any API answer could have arrived
        assert await page.page.is_hidden("#token-panel")
        await page.shot("first-paint")
        assert page.errors == []


@needs_browser
@pytest.mark.parametrize("size", ["desktop", "phone"])
async def test_every_view_works_and_fits(
    relay_factory: Callable[..., Any], tmp_path: Path, size: str
) -> None:
    viewport = DESKTOP if size == "desktop" else PHONE
    relay: Relay = await relay_factory(integrations=_integrations())
    seeded = await seed(relay)
    root, reply, pair, task = seeded["root"], seeded["reply"], seeded["pair"], seeded["task"]
    async with browser() as chromium, tab(chromium, tmp_path, viewport) as page:
        p = page.page
        await p.goto(relay.url + "/")
        await p.wait_for_selector('#agents tr[data-agent="bob"]')
        await p.wait_for_selector("#conn.conn-on")
        await page.fits(viewport["width"])
        await page.shot(f"{size}-overview")

        # the message rate over the last hour, and the channels
        bars = await p.eval_on_selector_all(
            "#rate-chart rect", "rects => rects.map(r => Number(r.getAttribute('height')))")
        assert len(bars) == 60 and bars[-1] > 0
        # 3 messages, the pair invite and its 2 messages, the task's message
        assert "(7," in await p.inner_text("#rate-total")
        assert "not configured" in await p.inner_text('#channels li[data-channel="telegram"]')
        assert "builds" in await p.inner_text("#channels")

        # a thread: both messages, who got each, and who read it
        await p.click(f'#messages li[data-message="{root["id"]}"]')
        await p.wait_for_selector("#detail .thread-item >> nth=1")
        assert await p.evaluate("location.hash") == f"#message-{root['id']}"
        first = f'#detail .thread-item[data-message="{root["id"]}"]'
        second = f'#detail .thread-item[data-message="{reply["id"]}"]'
        assert "read" in await p.inner_text(f'{first} .recipients li[data-agent="bob"].is-read')
        assert "unread" in await p.inner_text(
            f'{second} .recipients li[data-agent="alice"].is-unread')
        assert "please review PR #12" in await p.inner_text(first)
        if "sentBy" in root:
            assert root["sentBy"] in await p.inner_text(f"{first} .sent-by")
        await page.fits(viewport["width"])
        await page.shot(f"{size}-thread")

        # a reply arriving while the thread is open shows up in it
        async with api_client(relay) as api:
            await send(api, **{"from": "alice", "to": "bob", "replyTo": reply["id"],
                               "body": "nit fixed"})
        await p.wait_for_selector("#detail .thread-item >> nth=2", timeout=2000)

        # a pair's conversation
        await p.click(f'#pairs a[href="#pair-{pair["id"]}"]')
        await p.wait_for_selector("#detail .conversation .bubble:has-text('ran it: passes')")
        bubbles = await p.eval_on_selector_all("#detail .bubble", "b => b.map(x => x.className)")
        assert "bubble left" in bubbles and "bubble right" in bubbles
        await page.fits(viewport["width"])
        await page.shot(f"{size}-pair")

        # a task and its history
        await p.click(f'#tasks a[href="#task-{task["id"]}"]')
        await p.wait_for_selector("#detail .events li[data-event='claimed']")
        events = await p.eval_on_selector_all("#detail .events li",
                                              "items => items.map(i => i.dataset.event)")
        assert events[0] == "created" and "claimed" in events and len(events) >= 3
        assert "cleaning /var/log" in await p.inner_text("#detail")
        await page.fits(viewport["width"])
        await page.shot(f"{size}-task")
        await p.click("#detail-close")
        assert await p.is_hidden("#detail")

        # filters: by agent, by channel, by text
        async def shown() -> list[str]:
            ids: list[str] = await p.eval_on_selector_all(
                "#messages li", "items => items.map(i => i.dataset.message)")
            return ids

        everything = await shown()
        await p.select_option("#filter-agent", "alice")
        by_agent = await shown()
        assert str(root["id"]) in by_agent and len(by_agent) < len(everything)
        await p.select_option("#filter-agent", "")
        await p.select_option("#filter-channel", "builds")
        assert len(await shown()) == 1
        assert "build 41" in await p.inner_text("#messages")
        await p.select_option("#filter-channel", "")
        await p.fill("#filter-text", "nit fixed")
        assert len(await shown()) == 1
        await page.fits(viewport["width"])
        await page.shot(f"{size}-filtered")
        await p.fill("#filter-text", "")

        # a live update is on screen within a second
        async with api_client(relay) as api:
            started = time.monotonic()
            await send(api, **{"from": "ci", "to": "bob", "body": "live hello"})
            await p.wait_for_selector("#messages li:has-text('live hello')", timeout=1000)
            assert time.monotonic() - started < 1.0
        assert page.errors == []


def _integrations() -> Any:
    from relayd.config.settings import _integrations as parse

    return parse(INTEGRATIONS)


@needs_browser
async def test_token_prompt_then_live_updates_without_token_in_urls(
    relay_factory: Callable[..., Any], tmp_path: Path
) -> None:
    relay: Relay = await relay_factory(token=TOKEN)
    async with api_client(relay, TOKEN) as api, browser() as chromium, \
            tab(chromium, tmp_path, PHONE) as page:
        p = page.page
        await register(api, "builder-1", label="Builder", machine="box-a", tags=["ci"])
        await p.goto(relay.url + "/")
        await p.wait_for_selector("#token-panel:not([hidden])")
        assert await p.is_hidden("#main")
        assert "relayctl token show" in await p.inner_text("#token-note")
        await page.fits(PHONE["width"])
        await page.shot("phone-token")

        await p.fill("#token-input", "not-the-token")
        await p.click("#token-form button")
        await p.wait_for_selector("#token-note:has-text('not accepted')")
        await p.fill("#token-input", TOKEN)
        await p.click("#token-form button")
        await p.wait_for_selector('#agents tr[data-agent="builder-1"]')

        await register(api, "reviewer-2", label="Rev", tags=["review"])
        await send(api, **{"from": "ci", "to": "reviewer-2", "subject": "<i>s</i>",
                           "body": "<b>live hello</b>", "claimable": True})
        await p.wait_for_selector('#agents tr[data-agent="reviewer-2"]')
        await p.wait_for_selector("#messages li:has-text('<b>live hello</b>')")
        assert await p.eval_on_selector_all("#messages b, #messages i", "n => n.length") == 0
        assert len(page.api_requests("/api/agents")) == 1  # once, after the token

        assert TOKEN not in p.url
        assert await p.evaluate("[document.cookie, localStorage.length]") == ["", 0]
        assert page.api_requests("/api/events")
        assert not [r.url for r in page.requests if TOKEN in r.url or "not-the-token" in r.url]
        api_calls = [r for r in page.requests if "/api/" in r.url]
        tokens = [(await r.all_headers()).get("authorization") for r in api_calls]
        assert tokens[0] is None and "Bearer not-the-token" in tokens
        assert tokens[-1] == f"Bearer {TOKEN}"
        assert set(tokens) == {None, "Bearer not-the-token", f"Bearer {TOKEN}"}
        assert page.errors == []


@needs_browser
async def test_without_token_it_resumes_after_a_drop(
    relay_factory: Callable[..., Any], tmp_path: Path
) -> None:
    relay: Relay = await relay_factory()
    port = relay.address[1] if relay.address else 0
    async with api_client(relay) as api:
        await register(api, "solo-1", project="relay")
    async with browser() as chromium, tab(chromium, tmp_path) as page:
        p = page.page
        await p.goto(relay.url + "/")
        await p.wait_for_selector('#agents tr[data-agent="solo-1"]')
        await p.wait_for_selector("#conn:has-text('live')")
        async with api_client(relay) as api:
            await register(api, "seen-live")
        await p.wait_for_selector('#agents tr[data-agent="seen-live"]')

        # Restart the relay on the same port and database: the page reconnects with
        # Last-Event-ID, so an agent registered while it was away still shows up.
        await relay.stop()
        restarted: Relay = await relay_factory(port=port)
        async with api_client(restarted) as api:
            await register(api, "late-2")
        await p.wait_for_selector('#agents tr[data-agent="late-2"]', timeout=15000)
        resumed = [(await r.all_headers()).get("last-event-id")
                   for r in page.api_requests("/api/events")]
        assert all(int(value or 0) > 0 for value in resumed)  # from the snapshot's event id
        assert len(page.api_requests("/api/agents")) == 0  # embedded, then replayed
        assert page.errors == []


@needs_browser
async def test_compose_box_sends_a_claimable_message(
    relay: Relay, tmp_path: Path
) -> None:
    async with api_client(relay) as api, browser() as chromium, tab(chromium, tmp_path) as page:
        p = page.page
        await register(api, "target-1")
        await p.goto(relay.url + "/")
        await p.wait_for_selector('#agents tr[data-agent="target-1"]')
        await p.fill("#compose-from", "operator")
        await p.fill("#compose-to", "target-1")
        await p.fill("#compose-body", "please review #42")
        await p.check("#compose-claimable")
        await p.click("#compose button[type=submit]")
        await p.wait_for_selector("#compose-result:has-text('sent #')")
        async with api.get("/api/messages", params={"for": "target-1"}) as response:
            messages = (await response.json())["messages"]
        assert [(m["from"], m["body"], m["claimable"]) for m in messages] == [
            ("operator", "please review #42", True)
        ]
        await p.wait_for_selector("#messages li:has-text('claimable · unclaimed')")
        await call(api, "POST", f"/api/messages/{messages[0]['id']}/claim", agent="target-1")
        await p.wait_for_selector("#messages li:has-text('claimed by target-1')")
        await call(api, "DELETE", f"/api/messages/{messages[0]['id']}")
        await p.wait_for_selector("#messages li:has-text('please review #42')", state="detached")
        await call(api, "DELETE", "/api/agents/target-1")
        await p.wait_for_selector('#agents tr[data-agent="target-1"]', state="detached")
        assert page.errors == []
