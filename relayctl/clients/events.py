"""Reading the relay's Server-Sent Events stream (GET /api/events) with http.client.

The reader resumes a dropped connection with Last-Event-ID, so nothing is missed or repeated,
and gives up after a bounded number of failed attempts in a row (with backoff).
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from typing import Any

from relayctl.cli import CliError, ExitCode
from relayctl.clients.api import ApiClient, Query, api_error, is_refused

IDLE_TIMEOUT = 45.0  # the relay sends a comment at least every 15 s
MAX_RETRIES = 6
MAX_BACKOFF = 5.0


@dataclass(frozen=True)
class SseEvent:
    id: int | None
    type: str
    data: Any


class SseParser:
    """Turns text/event-stream lines into events (the WHATWG rules that matter here)."""

    def __init__(self) -> None:
        self.last_id: str | None = None
        self.retry_ms: int | None = None
        self._type = ""
        self._data: list[str] = []

    def feed(self, line: str) -> SseEvent | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._type = value
        elif name == "id" and "\0" not in value:
            self.last_id = value
        elif name == "retry" and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SseEvent | None:
        if not self._data:
            self._type = ""
            return None
        text = "\n".join(self._data)
        event_type = self._type or "message"
        self._type, self._data = "", []
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = text
        last = self.last_id
        return SseEvent(int(last) if last and last.isdigit() else None, event_type, data)


class _Dropped(Exception):
    """The stream ended or went silent; reconnect with Last-Event-ID."""


def stream_events(
    client: ApiClient,
    query: Query,
    *,
    last_event_id: int | None = None,
    deadline: float | None = None,
    on_reconnect: Callable[[int, str], None] | None = None,
    on_connect: Callable[[bool], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Generator[SseEvent, None, None]:
    """Events from GET /api/events until the deadline (time.monotonic), reconnecting as needed.

    After a dropped connection it reconnects with Last-Event-ID (so nothing is missed or
    repeated), backing off up to MAX_RETRIES attempts in a row before giving up.
    on_connect(reconnected) is called each time the stream is open.
    """
    parser = SseParser()
    if last_event_id is not None:
        parser.last_id = str(last_event_id)
    retries = _Retries(client)
    while True:
        try:
            for event in _read_stream(client, query, parser, deadline):
                if event is not None:
                    yield event
                    continue
                if on_connect is not None:
                    on_connect(retries.ever_connected)
                retries.connected()
            return  # deadline reached
        except _Dropped as dropped:
            reason, refused = str(dropped), False
        except (OSError, http.client.HTTPException) as exc:
            reason, refused = retries.connect_failed(exc)
        delay = retries.next_delay(reason, refused, parser.retry_ms)
        if deadline is not None and time.monotonic() + delay >= deadline:
            return
        if on_reconnect is not None:
            on_reconnect(retries.failures, reason)
        sleep(delay)


class _Retries:
    """Failed attempts in a row: a connection that opens starts a fresh series."""

    def __init__(self, client: ApiClient) -> None:
        self.client = client
        self.failures = 0
        self.ever_connected = False

    def connected(self) -> None:
        self.failures, self.ever_connected = 0, True

    def connect_failed(self, exc: OSError | http.client.HTTPException) -> tuple[str, bool]:
        """Why the connection failed, and whether it was refused (no relay listens)."""
        refused = is_refused(exc)
        if refused and not self.ever_connected:
            raise self.client.not_running() from None
        return ("no relay answers" if refused else f"connection failed ({exc!r})"), refused

    def next_delay(self, reason: str, refused: bool, retry_ms: int | None) -> float:
        """The backoff before the next attempt; CliError once MAX_RETRIES have failed."""
        self.failures += 1
        if self.failures > MAX_RETRIES:
            code = ExitCode.NOT_RUNNING if refused else ExitCode.FAILURE
            raise CliError(f"lost the event stream from {self.client.url}: {reason}", code)
        return _backoff(self.failures, retry_ms)


def _backoff(failures: int, retry_ms: int | None) -> float:
    delay = min(MAX_BACKOFF, 0.25 * 2.0 ** (failures - 1))
    return delay if retry_ms is None else max(delay, retry_ms / 1000)


def _past(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


def _read_timeout(deadline: float | None) -> float:
    if deadline is None:
        return IDLE_TIMEOUT
    return max(0.01, min(IDLE_TIMEOUT, deadline - time.monotonic()))


def _read_stream(client: ApiClient, query: Query, parser: SseParser,
                 deadline: float | None) -> Iterator[SseEvent | None]:
    """One connection. Yields None once connected, then events; returns at the deadline."""
    headers = client.headers({"Accept": "text/event-stream", "Cache-Control": "no-cache"})
    if parser.last_id:
        headers["Last-Event-ID"] = parser.last_id
    conn = client.connection(_read_timeout(deadline))
    try:
        conn.request("GET", client.path("/events", query), headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            _raise_for_stream(client, response)
        yield None
        while (line := _next_line(conn, response, deadline)) is not None:
            event = parser.feed(line.decode("utf-8", errors="replace"))
            if event is not None:
                yield event
    finally:
        conn.close()


def _next_line(conn: http.client.HTTPConnection, response: http.client.HTTPResponse,
               deadline: float | None) -> bytes | None:
    """The next line of the stream, None once the deadline has passed; _Dropped when the
    connection ends or stays silent past the idle timeout."""
    if _past(deadline):
        return None
    if conn.sock is not None:
        conn.sock.settimeout(_read_timeout(deadline))
    try:
        line = response.readline()
    except TimeoutError:
        if _past(deadline):
            return None
        raise _Dropped("the stream went silent") from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Dropped(f"connection lost ({type(exc).__name__})") from None
    if not line:
        raise _Dropped("the relay closed the stream")
    return line


def _raise_for_stream(client: ApiClient, response: http.client.HTTPResponse) -> None:
    raw = response.read()
    if response.status == 503:
        raise _Dropped("the relay is unavailable (503)")
    try:
        data = json.loads(raw)
    except ValueError:
        data = None
    raise api_error(response.status, data)
