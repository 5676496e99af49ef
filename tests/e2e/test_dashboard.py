"""The dashboard at `/` in a real headless Chromium, driven over the DevTools protocol.

No browser-automation package: Chromium is started with --remote-debugging-port=0, the port is
read from DevToolsActivePort, and CDP commands go over aiohttp's websocket client. Every request
the page makes is captured (Network.requestWillBeSent) to prove the token never lands in a URL.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from relayd.lifecycle import Relay

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium)"
)
TOKEN = "dash-secret-7f3a9c41"
SCREENSHOT = Path("/tmp/dashboard.png")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
    "--remote-debugging-port=0",
]


# --------------------------------------------------------------------------- the browser


def _wait_for_devtools_port(profile: Path, proc: subprocess.Popen[bytes]) -> int:
    marker = profile / "DevToolsActivePort"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if marker.exists():
            first_line = marker.read_text().split("\n", 1)[0].strip()
            if first_line.isdigit():
                return int(first_line)
        if proc.poll() is not None:
            raise RuntimeError(f"chromium exited early with {proc.returncode}")
        time.sleep(0.05)
    raise TimeoutError("chromium did not open its DevTools port")


def _stop_browser(proc: subprocess.Popen[bytes]) -> None:
    """Our Chromium runs in its own process group (start_new_session): end that group only."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture(scope="module")
def devtools_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    assert CHROMIUM is not None
    profile = tmp_path_factory.mktemp("chromium-profile")
    proc = subprocess.Popen(
        [CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        yield _wait_for_devtools_port(profile, proc)
    finally:
        _stop_browser(proc)


class Page:
    """One browser tab: CDP commands, JS evaluation, and a log of what the page did."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.requests: list[dict[str, Any]] = []  # Network.requestWillBeSent "request" objects
        self.errors: list[str] = []  # uncaught exceptions and console/CSP errors
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for frame in self.ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            message = json.loads(frame.data)
            if "id" in message:
                future = self.pending.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
            else:
                self._on_event(message["method"], message.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Network.requestWillBeSent":
            self.requests.append(params["request"])
        elif method == "Runtime.exceptionThrown":
            self.errors.append(json.dumps(params["exceptionDetails"])[:500])
        elif method == "Log.entryAdded":
            entry = params["entry"]
            # a 401 answer is logged by the network layer; that one is expected
            if entry["level"] == "error" and entry.get("source") != "network":
                self.errors.append(entry.get("text", ""))

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = future
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        answer = await asyncio.wait_for(future, 10)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"page error in {expression!r}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if await self.evaluate(f"Boolean({expression})"):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for: {expression}")
            await asyncio.sleep(0.05)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for(
            f"location.href === {json.dumps(url)} && document.readyState === 'complete'"
        )

    def urls(self) -> list[str]:
        return [request["url"] for request in self.requests]

    def requests_to(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["url"].split("?")[0].endswith(path)]


def header(request: dict[str, Any], name: str) -> str | None:
    """A header of a captured request (CDP reports names as sent: case varies)."""
    matches = [v for k, v in request["headers"].items() if k.lower() == name.lower()]
    return matches[0] if matches else None


@contextlib.asynccontextmanager
async def open_page(devtools_port: int) -> AsyncIterator[Page]:
    """A fresh tab (so a fresh sessionStorage), closed afterwards."""
    base = f"http://127.0.0.1:{devtools_port}"
    async with aiohttp.ClientSession() as session:
        async with session.put(f"{base}/json/new?about:blank") as response:
            target = await response.json(content_type=None)
        ws = await session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        try:
            for domain in ("Page", "Runtime", "Network", "Log"):
                await page.send(f"{domain}.enable")
            yield page
        finally:
            page.reader.cancel()
            await ws.close()
            async with session.get(f"{base}/json/close/{target['id']}") as response:
                await response.read()


# --------------------------------------------------------------------------- page helpers


async def submit_token(page: Page, token: str) -> None:
    await page.evaluate(
        f"document.getElementById('token-input').value = {json.dumps(token)};"
        "document.getElementById('token-form').requestSubmit()"
    )


def agent_row(agent_id: str) -> str:
    return f"document.querySelector('#agents tr[data-agent={json.dumps(agent_id)}]')"


def feed_contains(text: str) -> str:
    return f"document.getElementById('messages').textContent.includes({json.dumps(text)})"


async def save_screenshot(page: Page) -> None:
    shot = await page.send("Page.captureScreenshot", format="png")
    SCREENSHOT.write_bytes(base64.b64decode(shot["data"]))


# --------------------------------------------------------------------------- API helpers


@contextlib.asynccontextmanager
async def api_client(
    relay: Relay, token: str | None = None
) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession(base_url=relay.url, headers=headers) as session:
        yield session


async def register(api: aiohttp.ClientSession, agent_id: str, **fields: Any) -> None:
    async with api.post("/api/agents", json={"id": agent_id, **fields}) as response:
        assert response.status in (200, 201), await response.text()


async def send(api: aiohttp.ClientSession, **message: Any) -> dict[str, Any]:
    async with api.post("/api/messages", json=message) as response:
        assert response.status == 201, await response.text()
        sent: dict[str, Any] = await response.json()
        return sent


# --------------------------------------------------------------------------- tests


async def test_dashboard_assets_keep_a_strict_policy(relay: Relay) -> None:
    async with api_client(relay) as http:
        async with http.get("/") as page:
            policy = page.headers["Content-Security-Policy"]
            assert "unsafe-inline" not in policy and "script-src 'self'" in policy
            assert "<script" in await page.text()
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


@needs_chromium
async def test_token_prompt_then_live_updates_without_token_in_urls(
    relay_factory: Callable[..., Any], devtools_port: int
) -> None:
    relay: Relay = await relay_factory(token=TOKEN)
    async with api_client(relay, TOKEN) as api, open_page(devtools_port) as page:
        await register(api, "builder-1", label="Builder", machine="box-a", tags=["ci"])
        await page.goto(relay.url + "/")
        await page.wait_for("!document.getElementById('token-panel').hidden")
        assert await page.evaluate("document.getElementById('main').hidden") is True

        await submit_token(page, "not-the-token")
        await page.wait_for(
            "document.getElementById('token-note').textContent.includes('not accepted')"
        )
        await submit_token(page, TOKEN)
        await page.wait_for(agent_row("builder-1"))
        assert "Builder" in await page.evaluate(agent_row("builder-1") + ".textContent")

        # Arrives only through the fetch()-read SSE stream: the page lists agents just once.
        await register(api, "reviewer-2", label="Rev", tags=["review"], capabilities=["review"])
        await send(api, **{"from": "ci", "to": "reviewer-2", "subject": "<i>s</i>",
                           "body": "<b>live hello</b>", "claimable": True})
        await page.wait_for(agent_row("reviewer-2"))
        await page.wait_for(feed_contains("<b>live hello</b>"))
        markup = "document.querySelectorAll('#messages b, #messages i').length"
        assert await page.evaluate(markup) == 0  # shown as text, never parsed as HTML
        assert len(page.requests_to("/api/agents")) == 1
        await page.wait_for("document.getElementById('counts').textContent.startsWith('2/2')")
        await save_screenshot(page)

        assert TOKEN not in await page.evaluate("location.href")
        assert await page.evaluate("[document.cookie, localStorage.length]") == ["", 0]
        assert page.requests_to("/api/events"), page.urls()
        assert not [url for url in page.urls() if TOKEN in url or "not-the-token" in url]
        api_requests = [r for r in page.requests if "/api/" in r["url"]]
        # before the prompt no token, then the wrong one, then only the right one, in the header
        tokens = [header(r, "Authorization") for r in api_requests]
        assert tokens[0] is None and tokens[1] == "Bearer not-the-token"
        assert tokens[-1] == f"Bearer {TOKEN}"
        assert set(tokens) == {None, "Bearer not-the-token", f"Bearer {TOKEN}"}
        assert page.errors == []


@needs_chromium
async def test_without_token_loads_data_and_resumes_after_a_drop(
    relay_factory: Callable[..., Any], devtools_port: int
) -> None:
    relay: Relay = await relay_factory()
    port = relay.address[1] if relay.address else 0
    async with api_client(relay) as api:
        await register(api, "solo-1", project="relay")
    async with open_page(devtools_port) as page:
        await page.goto(relay.url + "/")
        await page.wait_for(agent_row("solo-1"))
        assert await page.evaluate("document.getElementById('token-panel').hidden") is True
        await page.wait_for("document.getElementById('conn').textContent === 'live'")
        tasks_exist = await _endpoint_exists(relay, "/api/tasks")
        tasks_hidden = await page.evaluate("document.getElementById('tasks-panel').hidden")
        assert tasks_hidden is (not tasks_exist)

        async with api_client(relay) as api:
            await register(api, "seen-live")
        await page.wait_for(agent_row("seen-live"))

        # Restart the relay on the same port and database: the page reconnects with
        # Last-Event-ID, so an agent registered while it was away still shows up.
        await relay.stop()
        restarted: Relay = await relay_factory(port=port)
        async with api_client(restarted) as api:
            await register(api, "late-2")
        await page.wait_for(agent_row("late-2"), timeout=15)
        resumed = [header(r, "Last-Event-ID") for r in page.requests_to("/api/events")]
        assert resumed[0] is None and int(resumed[-1] or 0) > 0
        assert len(page.requests_to("/api/agents")) == 1  # replayed, not reloaded
        assert page.errors == []


async def _endpoint_exists(relay: Relay, path: str) -> bool:
    async with api_client(relay) as api, api.get(path) as response:
        return response.status != 404


@needs_chromium
async def test_compose_box_sends_a_claimable_message(
    relay: Relay, devtools_port: int
) -> None:
    async with api_client(relay) as api, open_page(devtools_port) as page:
        await register(api, "target-1")
        await page.goto(relay.url + "/")
        await page.wait_for(agent_row("target-1"))
        await page.evaluate(
            "(() => { const set = (id, v) => { document.getElementById(id).value = v; };"
            "set('compose-from', 'operator'); set('compose-to', 'target-1');"
            "set('compose-body', 'please review #42');"
            "document.getElementById('compose-claimable').checked = true;"
            "document.getElementById('compose').requestSubmit(); })()"
        )
        await page.wait_for("document.getElementById('compose-result').textContent"
                            ".startsWith('sent #')")
        async with api.get("/api/messages", params={"for": "target-1"}) as response:
            messages = (await response.json())["messages"]
        assert [(m["from"], m["body"], m["claimable"]) for m in messages] == [
            ("operator", "please review #42", True)
        ]
        await page.wait_for(feed_contains("claimable · unclaimed"))

        async with api.post(f"/api/messages/{messages[0]['id']}/claim",
                            json={"agent": "target-1"}) as response:
            assert response.status == 200
        await page.wait_for(feed_contains("claimed by target-1"))
        async with api.delete(f"/api/messages/{messages[0]['id']}") as response:
            assert response.status == 204
        await page.wait_for("!" + feed_contains("please review #42"))
        async with api.delete("/api/agents/target-1") as response:
            assert response.status == 204
        await page.wait_for("!" + agent_row("target-1"))

        await register(api, "peer-1")
        await register(api, "peer-2")
        async with api.post("/api/pairs", json={"from": "peer-2", "to": "id:peer-1",
                                                "objective": "pair on #42"}) as response:
            assert response.status == 201, await response.text()
        await page.wait_for("document.getElementById('pairs').textContent.includes('pair on #42')")
        assert page.errors == []
