"""The Codex sidecar: bridges one Codex app-server thread to the relay.

It connects to the app-server (JSON-RPC over WebSocket), resolves the thread (the one given,
else the one Codex opened, else a new persistent one), registers the agent (provider `codex`,
id ``{hostname}-{project}-{hash of the thread id}`` unless AGENT_RELAY_AGENT_ID is set), and
then delivers every message for the agent into the thread: `turn/start` while the thread is
idle, `turn/steer` while a turn runs, several messages that arrive within the coalescing window
as one batch. Status follows the turns (busy/idle); heartbeats keep the agent online; both
connections are retried with backoff; approval requests are left to the user.

Run it on its own with ``python -m relayctl.providers.codex.sidecar --app-server ws://…``;
`relayctl codex` starts it for you.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from relayctl.clients.api import RelayAddress
from relayctl.provider_env import ProviderEnvError, ProviderIdentity, identity_from_env
from relayctl.providers.codex.delivery import (
    DeliveryLog,
    client_message_id,
    delivered_in_thread,
    delivery_text,
)
from relayctl.providers.codex.rpc import AppServerClient, Disconnected, RpcError
from relayctl.providers.common import session_agent_id

log = logging.getLogger("relayctl.codex")

PROVIDER = "codex"
WS_TOKEN_ENV = "AGENT_RELAY_CODEX_WS_TOKEN"  # the app-server's capability token, if any
DEFAULT_WINDOW = 0.5
DEFAULT_HEARTBEAT = 15.0
POLL_WAIT = 25  # seconds a relay long-poll may wait
BACKOFF_START = 0.2
BACKOFF_MAX = 10.0


def approval_overrides(approval: str | None) -> dict[str, dict[str, Any]]:
    """The approval mode as app-server parameters: for thread/start|resume and turn/start.

    read-only → a read-only sandbox; guarded → approvals on request in a workspace-write
    sandbox; open (or unset) → nothing, so the user's own Codex settings apply.
    """
    if approval == "read-only":
        return {"thread": {"sandbox": "read-only"},
                "turn": {"sandboxPolicy": {"type": "readOnly"}}}
    if approval == "guarded":
        return {"thread": {"sandbox": "workspace-write", "approvalPolicy": "on-request"},
                "turn": {"sandboxPolicy": {"type": "workspaceWrite"},
                         "approvalPolicy": "on-request"}}
    return {"thread": {}, "turn": {}}


def agent_identity(thread_id: str, env: Mapping[str, str], cwd: Path) -> ProviderIdentity:
    """The agent for this thread: AGENT_RELAY_AGENT_ID, else host-project-hash(thread id),
    derived as every provider derives a session's id (common.session_agent_id)."""
    scoped = {**env, "AGENT_RELAY_AGENT_ID": session_agent_id(thread_id, env, cwd),
              "AGENT_RELAY_PROVIDER": PROVIDER}
    return identity_from_env(scoped, cwd)


class Backoff:
    def __init__(self, start: float = BACKOFF_START, cap: float = BACKOFF_MAX) -> None:
        self.start, self.cap, self.delay = start, cap, start

    def reset(self) -> None:
        self.delay = self.start

    async def wait(self, stop: asyncio.Event) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.delay)
        self.delay = min(self.cap, self.delay * 2)


class RelayClient:
    """The few relay calls the sidecar makes, async (aiohttp)."""

    def __init__(self, address: RelayAddress) -> None:
        self.base = address.url.rstrip("/") + "/api"
        headers = {"Accept": "application/json", "User-Agent": "relayctl-codex"}
        if address.token:
            headers["Authorization"] = f"Bearer {address.token}"
        self.session = aiohttp.ClientSession(headers=headers)

    async def close(self) -> None:
        await self.session.close()

    async def call(
        self, method: str, path: str, body: Any = None,
        params: Mapping[str, str] | None = None,
        timeout: float = 10.0,  # noqa: ASYNC109 aiohttp's per-request ClientTimeout
    ) -> Any:
        async with self.session.request(
            method, self.base + path, json=body, params=params,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            if resp.status >= 400:
                raise RelayRefused(resp.status, data)
            return data


class RelayRefused(Exception):
    def __init__(self, status: int, data: Any) -> None:
        self.status = status
        self.data = data
        super().__init__(f"relay answered HTTP {status}: {data}")


@dataclass
class SidecarOptions:
    app_server: str
    relay: RelayAddress
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: Path = field(default_factory=Path.cwd)
    thread_id: str | None = None  # resume this thread
    attach: bool = False  # wait for the thread the Codex UI opens instead of starting one
    window: float = DEFAULT_WINDOW
    heartbeat: float = DEFAULT_HEARTBEAT
    state_file: Path | None = None
    announce: Callable[[str, str], None] = lambda key, value: None


class Sidecar:
    def __init__(self, options: SidecarOptions) -> None:
        self.options = options
        self.log = DeliveryLog(options.state_file)
        self.rpc: AppServerClient | None = None
        self.connected = asyncio.Event()
        self.thread_id: str | None = options.thread_id
        self.agent: ProviderIdentity | None = None
        self.active_turn: str | None = None
        self.status = "idle"
        self.cursor: int | None = None  # None: deliver the unread messages
        self._seen_threads: list[str] = []
        self._joined = False
        # The session guard: this sidecar's instance id and the epoch the relay gave it.
        self.instance_id = f"codex-sidecar-{secrets.token_hex(6)}"
        self.epoch: int | None = None
        self.superseded = asyncio.Event()
        self.heartbeat = options.heartbeat
        self._background: set[asyncio.Task[None]] = set()
        self._status_changed = asyncio.Event()
        self.relay: RelayClient | None = None
        approval = identity_from_env(options.env, options.cwd).profile.approval
        self.approval = approval
        self.overrides = approval_overrides(approval)

    # ------------------------------------------------------------------ running

    async def run(self, stop: asyncio.Event) -> None:
        self.relay = RelayClient(self.options.relay)
        tasks: list[asyncio.Task[Any]] = []
        try:
            if not await self._connect_app_server(stop):
                return
            thread = await self._resolve_thread(stop)
            if thread is None:
                return
            assert self.thread_id is not None
            self.agent = agent_identity(self.thread_id, self.options.env, self.options.cwd)
            self.options.announce("thread", self.thread_id)
            self._track_thread(thread)
            self._init_cursor(thread)
            await self._register_until_ok(stop)
            self.options.announce("agent", self.agent.agent_id)
            if self.epoch is not None:
                self.options.announce("session", f"{self.instance_id} {self.epoch}")
            tasks = [
                asyncio.create_task(self._app_server_watch(stop), name="codex-app-server"),
                asyncio.create_task(self._deliver_loop(stop), name="codex-deliver"),
                asyncio.create_task(self._heartbeat_loop(stop), name="codex-heartbeat"),
            ]
            await _first(stop.wait(), self.superseded.wait())
            if self.superseded.is_set() and not stop.is_set():
                log.warning("another session took agent %s over; this sidecar stops acting "
                            "for it", self.agent.agent_id)
                for task in tasks:
                    task.cancel()
                await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self._go_offline()
            if self.rpc is not None:
                await self.rpc.close()
            await self.relay.close()

    # ------------------------------------------------------------------ app-server side

    async def _connect_app_server(self, stop: asyncio.Event) -> bool:
        backoff = Backoff()
        while not stop.is_set():
            rpc = AppServerClient(self.options.app_server, self._on_notification,
                                  token=self.options.env.get(WS_TOKEN_ENV) or None)
            try:
                await rpc.connect()
            except (OSError, aiohttp.ClientError, TimeoutError, Disconnected, RpcError) as exc:
                await rpc.close()
                log.debug("app-server not reachable yet: %r", exc)
                await backoff.wait(stop)
                continue
            self.rpc = rpc
            self.connected.set()
            return True
        return False

    async def _resolve_thread(self, stop: asyncio.Event) -> dict[str, Any] | None:
        assert self.rpc is not None
        if self.thread_id:
            return await self._resume(self.thread_id)
        if not self.options.attach:
            result = await self.rpc.request("thread/start", {
                "cwd": str(self.options.cwd), "ephemeral": False,
                **self.overrides["thread"],
            })
            thread: dict[str, Any] = result["thread"]
            self.thread_id = thread["id"]
            return thread
        # The Codex UI opens the thread: wait for it to appear, then join it.
        while not stop.is_set():
            loaded = await self.rpc.request("thread/loaded/list", {})
            candidates = self._seen_threads + list(loaded.get("data") or [])
            if candidates:
                self.thread_id = candidates[0]
                return await self._resume(self.thread_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        return None

    async def _resume(self, thread_id: str) -> dict[str, Any]:
        """Join the thread. One that has had no turn yet has nothing on disk to resume from:
        read it instead and join it after its first turn (its status changes reach every
        connection meanwhile, and turn/start works on it all the same)."""
        assert self.rpc is not None
        try:
            result = await self.rpc.request("thread/resume", {
                "threadId": thread_id, **self.overrides["thread"],
            })
            self._joined = True
        except RpcError as exc:
            if "no rollout" not in exc.text:
                raise
            result = await self.rpc.request("thread/read", {"threadId": thread_id})
            self._joined = False
        thread: dict[str, Any] = result["thread"]
        return thread

    async def _join_later(self) -> None:
        if self._joined or self.thread_id is None:
            return
        with contextlib.suppress(RpcError, Disconnected, TimeoutError):
            thread = await self._resume(self.thread_id)
            if self._joined:
                self._track_thread(thread)

    def _track_thread(self, thread: dict[str, Any]) -> None:
        """Pick up the running turn (if any) from a thread as start/resume returned it."""
        self.active_turn = None
        for turn in thread.get("turns") or []:
            if turn.get("status") == "inProgress":
                self.active_turn = turn.get("id")
        status = (thread.get("status") or {}).get("type")
        self._set_status("busy" if self.active_turn or status == "active" else "idle")

    def _on_notification(self, method: str, params: dict[str, Any]) -> None:
        if method == "thread/started":
            thread = params.get("thread") or {}
            if thread.get("id") and not thread.get("parentThreadId"):
                self._seen_threads.append(thread["id"])
            return
        if params.get("threadId") != self.thread_id or self.thread_id is None:
            return
        if method == "turn/started":
            self.active_turn = (params.get("turn") or {}).get("id")
            self._set_status("busy")
        elif method == "turn/completed":
            if (params.get("turn") or {}).get("id") in (self.active_turn, None):
                self.active_turn = None
            self._set_status("busy" if self.active_turn else "idle")
        elif method == "thread/status/changed":
            self._on_thread_status((params.get("status") or {}).get("type"))

    def _on_thread_status(self, kind: str | None) -> None:
        if kind == "active":
            self._set_status("busy")
        elif kind == "idle":
            self.active_turn = None
            self._set_status("idle")
            if not self._joined:
                task = asyncio.create_task(self._join_later())
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    def _set_status(self, status: str) -> None:
        if status != self.status:
            self.status = status
            self._status_changed.set()

    async def _app_server_watch(self, stop: asyncio.Event) -> None:
        """When the app-server connection drops: reconnect with backoff and rejoin the thread."""
        while not stop.is_set():
            assert self.rpc is not None
            await self.rpc.closed.wait()
            self.connected.clear()
            await self.rpc.close()
            log.info("lost the app-server connection; reconnecting")
            if not await self._connect_app_server(stop):
                return
            try:
                assert self.thread_id is not None
                self._track_thread(await self._resume(self.thread_id))
            except (RpcError, Disconnected, TimeoutError) as exc:
                log.warning("could not rejoin thread %s: %s", self.thread_id, exc)
                self.connected.clear()
                await self.rpc.close()

    # ------------------------------------------------------------------ relay side

    def _init_cursor(self, thread: dict[str, Any]) -> None:
        assert self.agent is not None
        entry = self.log.get(self.agent.agent_id)
        in_thread = delivered_in_thread(thread)
        logged = entry.get("cursor") if isinstance(entry.get("cursor"), int) else None
        if logged is None and not in_thread:
            self.cursor = None
        else:
            self.cursor = max(logged or 0, in_thread)

    def _guard(self) -> dict[str, Any]:
        """The session guard fields for heartbeats and updates (once the relay gave an epoch)."""
        if self.epoch is None:
            return {}
        return {"instanceId": self.instance_id, "epoch": self.epoch}

    async def _register(self) -> None:
        assert self.relay is not None and self.agent is not None
        body = self.agent.registration()
        body["provider"] = PROVIDER
        body["meta"] = {"threadId": self.thread_id, "appServer": self.options.app_server}
        body["instanceId"] = self.instance_id
        agent = await self.relay.call("POST", "/agents", body)
        epoch = agent.get("epoch") if isinstance(agent, dict) else None
        self.epoch = epoch if isinstance(epoch, int) else None
        await self._heartbeat_once()

    async def _heartbeat_once(self) -> None:
        assert self.relay is not None and self.agent is not None
        try:
            await self.relay.call("POST", f"/agents/{self.agent.agent_id}/heartbeat",
                                  {"status": self.status, **self._guard()})
        except RelayRefused as exc:
            if exc.status == 409 and isinstance(exc.data, dict) and exc.data.get("superseded"):
                self.superseded.set()
                return
            raise

    async def _learn_stale_ttl(self) -> None:
        """Heartbeat at least every third of the relay's STALE_TTL_MS when it says it."""
        assert self.relay is not None
        with contextlib.suppress(Exception):
            health = await self.relay.call("GET", "/health", timeout=3.0)
            ttl = health.get("staleTtlMs") if isinstance(health, dict) else None
            if isinstance(ttl, int) and ttl > 0:
                self.heartbeat = min(self.options.heartbeat, ttl / 3000)

    async def _register_until_ok(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                await self._register()
                await self._learn_stale_ttl()
                return
            except (OSError, aiohttp.ClientError, TimeoutError, RelayRefused, ValueError) as exc:
                log.warning("cannot register with the relay (%s); retrying", exc)
                await backoff.wait(stop)

    async def _heartbeat_loop(self, stop: asyncio.Event) -> None:
        assert self.relay is not None and self.agent is not None
        backoff = Backoff()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._status_changed.wait(), self.heartbeat)
            self._status_changed.clear()
            try:
                await self._heartbeat_once()
                backoff.reset()
            except RelayRefused as exc:
                if exc.status == 404:
                    with contextlib.suppress(Exception):
                        await self._register()
            except Exception as exc:  # the relay is down or odd: try again after the backoff
                log.debug("heartbeat failed: %r", exc)
                self._status_changed.set()
                await backoff.wait(stop)

    async def _fetch(self, wait: int, after: int | None = None) -> list[dict[str, Any]]:
        """The agent's messages past the cursor (or past `after`), long-polling `wait` s."""
        assert self.relay is not None and self.agent is not None
        params = {"for": self.agent.agent_id, "limit": "100", "wait": str(wait)}
        since = self.cursor if after is None else after
        params["undelivered"] = "true"  # where the relay records delivery
        if since is None:
            params.update(unread="true", since="0")
        else:
            params["since"] = str(since)
        data = await self.relay.call("GET", "/messages", params=params, timeout=wait + 10)
        messages = data.get("messages") if isinstance(data, dict) else None
        return [m for m in messages or [] if isinstance(m, dict) and isinstance(m.get("id"), int)]

    async def _deliver_loop(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        while not stop.is_set():
            try:
                batch = await self._fetch(POLL_WAIT)
                if batch and self.options.window > 0:
                    await asyncio.sleep(self.options.window)
                    batch += await self._fetch(0, after=max(m["id"] for m in batch))
                backoff.reset()
            except (OSError, aiohttp.ClientError, TimeoutError, RelayRefused, ValueError) as exc:
                log.debug("relay poll failed: %r", exc)
                await backoff.wait(stop)
                continue
            except Exception:  # never let one odd answer end delivery for the session
                log.exception("relay poll failed")
                await backoff.wait(stop)
                continue
            if not batch:
                continue
            batch.sort(key=lambda m: m["id"])
            try:
                await self._deliver(batch, stop)
            except Exception:  # e.g. the state file cannot be written: keep delivering
                log.exception("delivering %s failed", client_message_id(batch))
                await backoff.wait(stop)

    def _advance(self, batch: list[dict[str, Any]]) -> None:
        """Move the in-memory cursor past batch (the durable one moves after delivery)."""
        if batch:
            self.cursor = max(self.cursor or 0, *(m["id"] for m in batch))

    async def _deliver(self, batch: list[dict[str, Any]], stop: asyncio.Event) -> None:
        assert self.agent is not None
        text = delivery_text(batch, self.agent.agent_id)
        payload = {"input": [{"type": "text", "text": text, "text_elements": []}],
                   "clientUserMessageId": client_message_id(batch)}
        backoff = Backoff()
        while not stop.is_set():
            if not self.connected.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.connected.wait(), 1.0)
                continue
            try:
                await self._inject(payload)
                break
            except (Disconnected, TimeoutError) as exc:
                log.debug("delivery interrupted: %r", exc)
                await backoff.wait(stop)
            except RpcError as exc:
                log.warning("Codex refused the delivery (%s); retrying", exc)
                await backoff.wait(stop)
        else:
            return
        self._advance(batch)
        self.log.record(self.agent.agent_id, cursor=self.cursor, threadId=self.thread_id)
        await self._mark_delivered(batch)

    async def _inject(self, payload: dict[str, Any]) -> None:
        """turn/steer into the running turn, else turn/start; a steer refused because the turn
        just ended falls back to turn/start."""
        assert self.rpc is not None
        turn = self.active_turn
        if turn:
            try:
                await self.rpc.request("turn/steer", {
                    "threadId": self.thread_id, "expectedTurnId": turn, **payload})
                return
            except RpcError as exc:
                log.debug("turn/steer refused (%s); starting a turn", exc)
                if self.active_turn == turn:
                    self.active_turn = None
        result = await self.rpc.request("turn/start", {
            "threadId": self.thread_id, **payload, **self.overrides["turn"]})
        started = (result or {}).get("turn") or {}
        if started.get("status") == "inProgress" and started.get("id"):
            self.active_turn = started["id"]
            self._set_status("busy")

    async def _mark_delivered(self, batch: list[dict[str, Any]]) -> None:
        """Tell the relay (where it records delivery) that these reached the session."""
        assert self.relay is not None and self.agent is not None
        for message in batch:
            with contextlib.suppress(Exception):
                await self.relay.call("PATCH", f"/messages/{message['id']}",
                                      {"agent": self.agent.agent_id, "delivered": True},
                                      timeout=3.0)

    async def _go_offline(self) -> None:
        if self.relay is None or self.agent is None or self.superseded.is_set():
            return  # a session that took the agent over keeps it as it is
        with contextlib.suppress(Exception):
            await self.relay.call("PATCH", f"/agents/{self.agent.agent_id}",
                                  {"status": "offline", **self._guard()}, timeout=3.0)


async def _first(*waits: Any) -> None:
    """Until the first of these awaitables completes (the others are cancelled)."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


# ---------------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m relayctl.providers.codex.sidecar",
        description="Bridge a Codex app-server thread to Agent Relay.")
    parser.add_argument("--app-server", required=True, metavar="WS_URL")
    parser.add_argument("--thread", metavar="THREAD_ID", help="resume this thread")
    parser.add_argument("--attach", action="store_true",
                        help="join the thread the Codex UI opens instead of starting one")
    parser.add_argument("--window-ms", type=int, default=None,
                        help="coalescing window (default: AGENT_RELAY_CODEX_WINDOW_MS or 500)")
    parser.add_argument("--config", help="relayctl config file (to find the relay)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from relayctl.cli import CliError
    from relayctl.clients.api import find_relay

    args = parse_args(argv)
    logging.basicConfig(level=os.environ.get("AGENT_RELAY_CODEX_LOG", "WARNING").upper(),
                        format="relayctl codex sidecar: %(message)s", stream=sys.stderr)
    try:
        relay = find_relay(args.config)
    except CliError as exc:
        print(f"relayctl codex sidecar: {exc.message}", file=sys.stderr)
        return 1
    window_ms = args.window_ms
    if window_ms is None:
        window_ms = int(os.environ.get("AGENT_RELAY_CODEX_WINDOW_MS", "500") or 500)

    def announce(key: str, value: str) -> None:
        print(f"{key}: {value}", flush=True)

    options = SidecarOptions(app_server=args.app_server, relay=relay, thread_id=args.thread,
                             attach=args.attach, window=max(0, window_ms) / 1000,
                             announce=announce)
    try:
        identity_from_env(options.env, options.cwd)  # a broken profile: one line, not a trace
    except ProviderEnvError as exc:
        print(f"relayctl codex sidecar: {exc}", file=sys.stderr)
        return 1

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await Sidecar(options).run(stop)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
