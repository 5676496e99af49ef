"""`relayctl claude monitor`: the Claude Code plugin monitor.

Claude Code runs it for the whole session and hands every line it prints to the model. It
prints exactly one line per message delivered to the session's agent (common.monitor_line),
records each printed message as delivered (PATCH /messages/:id {agent, delivered: true}) so no
monitor ever prints it again, heartbeats the agent at least every STALE_TTL_MS / 3, and follows
the relay across restarts with a quiet backoff.

The agent: AGENT_RELAY_AGENT_ID when set, else the id the SessionStart hook of the same session
recorded (claude_state.session_file), else one derived from $CLAUDE_CODE_SESSION_ID.

Delivery path: an SSE stream (GET /events?for=AGENT) gives live messages; on every (re)connect
the monitor also lists what is still undelivered (GET /messages?for=AGENT&undelivered=true), so
messages sent while it was away are printed too. A set of printed ids keeps the two paths from
printing one message twice; marks are sent by a background thread so printing never waits on
them.
"""

from __future__ import annotations

import collections
import contextlib
import http.client
import os
import queue
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

from relayctl.cli import CliError
from relayctl.clients.api import ApiClient, RelayError, find_relay
from relayctl.clients.events import SseParser
from relayctl.providers import claude_state
from relayctl.providers.claude_hook import registration
from relayctl.providers.common import escape_inline, mark_delivered, monitor_line

DEFAULT_STALE_TTL_MS = 90_000
MAX_HEARTBEAT_SECONDS = 20.0
MIN_BACKOFF, MAX_BACKOFF = 0.1, 1.0
HTTP_TIMEOUT = 5.0
REMEMBERED = 20_000
ID_WAIT_NOTICE = 10.0
IDLE_SECONDS = 45.0  # the relay sends a comment at least every 15 s


class Superseded(Exception):
    """A newer session of the same agent took over: stop delivering."""


class Monitor:
    def __init__(self, client: ApiClient, env: Mapping[str, str], out: TextIO,
                 err: TextIO) -> None:
        self.client = client
        self.env = env
        self.out = out
        self.err = err
        self.instance_id = f"claude-monitor-{uuid.uuid4().hex[:16]}"
        self.epoch: int | None = None
        self.registered_for: str | None = None
        self.agent_id: str | None = None
        self.claude_pid = claude_state.claude_pid()
        self.stale_ttl_ms = _env_int(env, "STALE_TTL_MS") or DEFAULT_STALE_TTL_MS
        self.printed: set[int] = set()
        self._order: collections.deque[int] = collections.deque()
        self.marks: queue.Queue[tuple[str, int]] = queue.Queue()
        self.stop = threading.Event()
        self.superseded = threading.Event()
        self.paused = threading.Event()  # `relayctl claude disconnect`
        self.reconnect = threading.Event()
        self.print_lock = threading.Lock()
        self.down_since: float | None = None
        self.said: set[str] = set()
        self._conn: http.client.HTTPConnection | None = None

    # ------------------------------------------------------------------ messages to people

    def note(self, key: str, text: str) -> None:
        """One stderr line per kind of situation until it changes (quiet backoff)."""
        if key in self.said:
            return
        self.said.add(key)
        with contextlib.suppress(OSError, ValueError):
            print(f"agent-relay monitor: {escape_inline(text)}", file=self.err, flush=True)

    def relay_back(self) -> None:
        if self.down_since is not None:
            self.down_since = None
            self.said.discard("down")

    # ------------------------------------------------------------------ identity

    def wanted_agent(self) -> str | None:
        return claude_state.current_agent(self.env, self.claude_pid)

    def wait_for_agent(self) -> str:
        started = time.monotonic()
        while not self.stop.is_set():
            agent = self.wanted_agent()
            if agent:
                return agent
            if time.monotonic() - started > ID_WAIT_NOTICE:
                self.note("no-id", "waiting for the SessionStart hook to name this session's "
                          "agent (or set AGENT_RELAY_AGENT_ID)")
            self.stop.wait(0.2)
        raise SystemExit(0)

    def register(self) -> None:
        assert self.agent_id is not None
        body = {**registration(self.agent_id, Path.cwd(), self.env), "instanceId":
                self.instance_id}
        body.pop("meta", None)  # keep what SessionStart recorded
        agent = self.client.post("/agents", body)
        self.epoch = int(agent.get("epoch") or 1)
        self.registered_for = self.agent_id
        self.superseded.clear()

    def ensure_registered(self) -> None:
        """Register once per agent id; after that a guarded heartbeat keeps the status the
        hooks set (busy/idle), registering again only when the relay forgot the agent."""
        if self.epoch is None or self.registered_for != self.agent_id:
            self.register()
            return
        try:
            self.client.post(f"/agents/{self.agent_id}/heartbeat",
                             {"instanceId": self.instance_id, "epoch": self.epoch})
        except RelayError as exc:
            if exc.status == 404:
                self.register()
            elif exc.status == 409:
                self.become_standby()
                raise Superseded() from None
            else:
                raise

    def learn_stale_ttl(self) -> None:
        try:
            health = self.client.get("/health", timeout=HTTP_TIMEOUT)
        except CliError:
            return
        value = health.get("staleTtlMs") if isinstance(health, dict) else None
        if isinstance(value, int) and value > 0:
            self.stale_ttl_ms = min(self.stale_ttl_ms, value) \
                if _env_int(self.env, "STALE_TTL_MS") else value

    @property
    def heartbeat_interval(self) -> float:
        return max(0.2, min(MAX_HEARTBEAT_SECONDS, self.stale_ttl_ms / 3000 * 0.9))

    # ------------------------------------------------------------------ printing

    def deliver(self, message: Any) -> None:
        if not isinstance(message, dict) or not isinstance(message.get("id"), int):
            return
        if self.superseded.is_set() or self.paused.is_set():
            return
        agent = self.agent_id
        assert agent is not None
        message_id = message["id"]
        with self.print_lock:
            if message_id in self.printed:
                return
            line = monitor_line(message)
            try:
                self.out.write(line + "\n")
                self.out.flush()
            except (BrokenPipeError, ValueError):
                self.stop.set()
                raise SystemExit(0) from None
            self._remember(message_id)
        self.marks.put((agent, message_id))
        with contextlib.suppress(OSError):
            claude_state.record_delivery(agent, message)

    def _remember(self, message_id: int) -> None:
        self.printed.add(message_id)
        self._order.append(message_id)
        while len(self._order) > REMEMBERED:
            self.printed.discard(self._order.popleft())

    def catch_up(self) -> None:
        """Print what is still undelivered (sent while no monitor was connected)."""
        since = 0
        while not self.stop.is_set():
            page = self.client.get("/messages", {"for": self.agent_id, "undelivered": True,
                                                 "since": since, "limit": 200},
                                   timeout=HTTP_TIMEOUT)
            messages = page.get("messages", []) if isinstance(page, dict) else []
            for message in messages:
                self.deliver(message)
            if len(messages) < 200:
                return
            since = max(m["id"] for m in messages)

    # ------------------------------------------------------------------ threads

    def mark_worker(self) -> None:
        """Send the delivered marks in order; keep them while the relay is away."""
        pending: tuple[str, int] | None = None
        delay = MIN_BACKOFF
        while not self.stop.is_set():
            if pending is None:
                try:
                    pending = self.marks.get(timeout=0.5)
                except queue.Empty:
                    continue
            try:
                mark_delivered(self.client, pending[1], pending[0])
                pending, delay = None, MIN_BACKOFF
            except RelayError as exc:
                if exc.status < 500:
                    pending = None  # nothing left to mark
                else:
                    self.stop.wait(delay)
                    delay = min(MAX_BACKOFF * 2, delay * 2)
            except CliError:
                self.stop.wait(delay)
                delay = min(MAX_BACKOFF * 2, delay * 2)

    def heartbeat_worker(self) -> None:
        last = time.monotonic()
        while not self.stop.wait(0.2):
            # The interval follows what the relay says its STALE_TTL_MS is (learnt late).
            if time.monotonic() - last < self.heartbeat_interval:
                continue
            last = time.monotonic()
            # A relay that is down: the stream loop notices it and says so once.
            with contextlib.suppress(CliError):
                self.heartbeat_once()

    def heartbeat_once(self) -> None:
        wanted = self.wanted_agent()
        if wanted and wanted != self.agent_id:  # /clear started a new session: follow it
            self.agent_id = wanted
            self.register()
            self.reconnect.set()
            self.interrupt()
            return
        if self.check_paused():
            return
        if self.superseded.is_set():
            self.try_take_back()
            return
        if self.epoch is None:
            return  # not registered yet: the stream loop registers first
        body = {"instanceId": self.instance_id, "epoch": self.epoch}
        try:
            self.client.post(f"/agents/{self.agent_id}/heartbeat", body)
        except RelayError as exc:
            if exc.status == 404:  # pruned: register again
                self.register()
                self.reconnect.set()
                self.interrupt()
            elif exc.status == 409:
                self.become_standby()
            else:
                raise

    def check_paused(self) -> bool:
        """Follow `relayctl claude disconnect` (and its --undo)."""
        assert self.agent_id is not None
        disconnected = bool(claude_state.read(claude_state.agent_file(self.agent_id))
                            .get("disconnected"))
        if disconnected and not self.paused.is_set():
            self.paused.set()
            self.note("paused", f"{self.agent_id} was disconnected; delivery paused")
            self.reconnect.set()
            self.interrupt()
        elif not disconnected and self.paused.is_set():
            self.paused.clear()
            self.said.discard("paused")
            if not self.superseded.is_set():  # a window standing by stays standing by
                self.register()
            self.reconnect.set()
        return disconnected

    def become_standby(self) -> None:
        if not self.superseded.is_set():
            self.superseded.set()
            self.note("standby", f"another window of this session took over agent "
                      f"{self.agent_id}; this monitor stands by")
            self.reconnect.set()
            self.interrupt()

    def try_take_back(self) -> None:
        """Standing by: take the agent back once the newer session has gone offline."""
        try:
            agent = self.client.get(f"/agents/{self.agent_id}", timeout=HTTP_TIMEOUT)
        except RelayError as exc:
            if exc.status != 404:
                raise
            agent = None
        if agent is None or agent.get("status") == "offline":
            self.register()
            self.said.discard("standby")
            self.reconnect.set()

    # ------------------------------------------------------------------ the stream

    def run(self) -> int:
        self.agent_id = self.wait_for_agent()
        threading.Thread(target=self.mark_worker, name="marks", daemon=True).start()
        threading.Thread(target=self.heartbeat_worker, name="heartbeat", daemon=True).start()
        delay = MIN_BACKOFF
        last_event_id: str | None = None
        while not self.stop.is_set():
            try:
                self.learn_stale_ttl()
                if self.check_paused():
                    raise Superseded()
                self.ensure_registered()
                last_event_id = self.stream(last_event_id)
                delay = MIN_BACKOFF
                continue
            except Superseded:
                self.wait_standby()
                continue
            except RelayError as exc:
                if exc.status == 409:
                    self.become_standby()
                    continue
                self.relay_trouble(f"the relay refused the monitor: {exc.message}")
            except (CliError, Dropped, OSError, http.client.HTTPException) as exc:
                text = exc.message if isinstance(exc, CliError) else str(exc)
                self.relay_trouble(text or type(exc).__name__)
            self.stop.wait(delay)
            delay = min(MAX_BACKOFF, delay * 2)
        return 0

    def relay_trouble(self, text: str) -> None:
        if self.down_since is None:
            self.down_since = time.monotonic()
        self.note("down", f"{text}; retrying quietly")

    def wait_standby(self) -> None:
        while (self.superseded.is_set() or self.paused.is_set()) and not self.stop.is_set():
            self.stop.wait(0.5)

    def stream(self, last_id: str | None) -> str | None:
        """One SSE connection: catch up once connected, then deliver live messages. Returns
        (with the last event id) when told to reconnect; raises Dropped when the link fails."""
        parser = SseParser()
        parser.last_id = last_id
        self.reconnect.clear()
        conn = self.client.connection(HTTP_TIMEOUT)
        self._conn = conn
        try:
            response = self.open_stream(conn, last_id)
            self.relay_back()
            self.catch_up()
            self.deliver_live(conn, response, parser)
            return parser.last_id
        finally:
            self._conn = None
            conn.close()

    def open_stream(self, conn: http.client.HTTPConnection,
                    last_id: str | None) -> http.client.HTTPResponse:
        headers = self.client.headers({"Accept": "text/event-stream",
                                       "Cache-Control": "no-cache"})
        if last_id:
            headers["Last-Event-ID"] = last_id
        conn.request("GET", self.client.path("/events", {"for": self.agent_id}),
                     headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise Dropped(f"the relay answered the event stream with HTTP {response.status}")
        return response

    def deliver_live(self, conn: http.client.HTTPConnection,
                     response: http.client.HTTPResponse, parser: SseParser) -> None:
        """Deliver each message.new until told to reconnect or stop; raises Superseded when
        another monitor took over or the session paused, Dropped when the link fails."""
        while not self.stop.is_set():
            if self.superseded.is_set() or self.paused.is_set():
                raise Superseded()
            if self.reconnect.is_set():
                return
            raw = self.read_line(conn, response)
            if raw is None:
                continue  # interrupted: the loop head says why
            event = parser.feed(raw.decode("utf-8", errors="replace"))
            if event is not None and event.type == "message.new":
                self.deliver(event.data)

    def read_line(self, conn: http.client.HTTPConnection,
                  response: http.client.HTTPResponse) -> bytes | None:
        """The next line of the stream; None when a flag just set interrupted the read."""
        if conn.sock is not None:
            conn.sock.settimeout(IDLE_SECONDS)
        try:
            raw = response.readline()
        except TimeoutError:
            raise Dropped("the event stream went silent") from None
        except (OSError, ValueError, http.client.HTTPException) as exc:
            if self.interrupted():
                return None
            raise Dropped(f"the event stream broke ({type(exc).__name__})") from None
        if not raw:
            if self.interrupted():
                return None
            raise Dropped("the relay closed the event stream")
        return raw

    def interrupted(self) -> bool:
        return (self.reconnect.is_set() or self.superseded.is_set() or self.paused.is_set()
                or self.stop.is_set())

    def interrupt(self) -> None:
        """Wake the stream reader (blocked on the socket) so it acts on a flag just set."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class Dropped(Exception):
    """The event stream failed; reconnect after a pause."""


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def run(env: Mapping[str, str] | None = None, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    env = os.environ if env is None else env
    out, err = out or sys.stdout, err or sys.stderr

    def leave(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, leave)
    with contextlib.suppress(ValueError, OSError):
        signal.signal(signal.SIGHUP, leave)
    try:
        client = ApiClient(find_relay(env=env), timeout=HTTP_TIMEOUT)
        monitor = Monitor(client, env, out, err)
        return monitor.run()
    except CliError as exc:
        with contextlib.suppress(OSError, ValueError):
            print(f"agent-relay monitor: {escape_inline(exc.message)}", file=err, flush=True)
        return 0
    except KeyboardInterrupt:
        return 0
