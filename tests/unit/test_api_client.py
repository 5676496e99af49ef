"""relayctl's API client: where it finds the relay, and how it reads an event stream."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from relayctl.clients.api import ApiClient, RelayAddress, api_error, find_relay
from relayctl.clients.events import SseEvent, SseParser, stream_events
from relayctl.main import CliError
from relayd.config import paths


def feed(parser: SseParser, text: str) -> list[SseEvent]:
    events = [parser.feed(line) for line in text.splitlines(keepends=True)]
    return [e for e in events if e is not None]


def test_sse_parser_reads_id_event_and_json_data_and_skips_comments() -> None:
    parser = SseParser()
    text = (": connected\n\nid: 7\nevent: message.new\ndata: {\"id\": 3}\n\n"
            ": keep-alive\n\nid: 8\r\nevent: agent.removed\r\ndata: {\"id\": \"x\"}\r\n\r\n")
    assert feed(parser, text) == [SseEvent(7, "message.new", {"id": 3}),
                                  SseEvent(8, "agent.removed", {"id": "x"})]
    assert parser.last_id == "8"


def test_sse_parser_joins_data_lines_and_keeps_text_that_is_not_json() -> None:
    parser = SseParser()
    assert feed(parser, "data: line one\ndata:line two\nretry: 3000\n\n") == [
        SseEvent(None, "message", "line one\nline two")
    ]
    assert parser.retry_ms == 3000


def test_sse_parser_ignores_an_unfinished_event() -> None:
    parser = SseParser()
    assert feed(parser, "id: 1\nevent: x\ndata: {}\n") == []


@pytest.fixture(autouse=True)
def only_the_configured_socket_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep listen records of relays running elsewhere on this machine out of these tests."""
    monkeypatch.setattr(paths, "listen_file_candidates",
                        lambda socket_path: [socket_path.parent / "listen.json"])


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f'host = "0.0.0.0"\nport = 4999\ntoken = "local-token"\n'
                    f'socket_path = "{tmp_path}/run/relayd.sock"\n')
    return path


def test_url_from_the_environment_drops_a_trailing_api(config: Path) -> None:
    env = {"AGENT_RELAY_URL": "http://relay.example:4850/api/", "AGENT_RELAY_TOKEN": "t"}
    assert find_relay(str(config), env) == RelayAddress("http://relay.example:4850", "t")


def test_the_local_token_is_sent_only_to_a_loopback_url(config: Path) -> None:
    local = find_relay(str(config), {"AGENT_RELAY_URL": "http://127.0.0.1:4850"})
    remote = find_relay(str(config), {"AGENT_RELAY_URL": "http://10.1.2.3:4850"})
    assert local.token == "local-token"
    assert remote.token is None


def test_without_a_url_the_config_address_is_used_with_wildcards_as_loopback(
    config: Path,
) -> None:
    assert find_relay(str(config), {}) == RelayAddress("http://127.0.0.1:4999", "local-token")


def test_a_live_relays_listen_record_beats_the_config_port(config: Path, tmp_path: Path) -> None:
    record = tmp_path / "run" / "listen.json"
    record.parent.mkdir()
    record.write_text(json.dumps({"pid": os.getpid(), "host": "127.0.0.1", "port": 5123}))
    assert find_relay(str(config), {}).url == "http://127.0.0.1:5123"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    record.write_text(json.dumps({"pid": int(dead.stdout), "host": "127.0.0.1", "port": 5123}))
    assert find_relay(str(config), {}).url == "http://127.0.0.1:4999"


def test_an_ipv6_host_gets_brackets(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(f'host = "::1"\nport = 4850\nsocket_path = "{tmp_path}/s.sock"\n')
    assert find_relay(str(path), {}).url == "http://[::1]:4850"


def test_a_url_without_a_scheme_is_a_usage_error(config: Path) -> None:
    with pytest.raises(CliError, match="must start with http") as caught:
        find_relay(str(config), {"AGENT_RELAY_URL": "localhost:4850"})
    assert caught.value.code == 2


def test_server_errors_become_one_line_with_the_code() -> None:
    error = api_error(409, {"error": "pair target 'x' is ambiguous", "code": "ambiguous_target",
                            "candidates": ["a", "b"]})
    assert error.message == "pair target 'x' is ambiguous (ambiguous_target); candidates: a, b"
    assert api_error(500, "oops").message == "the relay answered HTTP 500"


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc", "ftp://relay:21", "http://:4850"])
def test_an_unusable_url_is_a_usage_error(url: str) -> None:
    with pytest.raises(CliError, match="cannot use relay URL") as caught:
        ApiClient(RelayAddress(url, None))
    assert caught.value.code == 2


class OneEventPerConnection(http.server.BaseHTTPRequestHandler):
    """Each connection gets one event (ids 1, 2, …) and is then closed, like a dropped stream."""

    protocol_version = "HTTP/1.0"
    seen_last_ids: ClassVar[list[str | None]] = []

    def do_GET(self) -> None:
        self.seen_last_ids.append(self.headers.get("Last-Event-ID"))
        number = len(self.seen_last_ids)
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        self.wfile.write(f'id: {number}\nevent: message.new\ndata: {{"n": {number}}}\n\n'.encode())

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def dropping_server() -> Iterator[http.server.ThreadingHTTPServer]:
    OneEventPerConnection.seen_last_ids = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), OneEventPerConnection)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client_of(server: http.server.ThreadingHTTPServer) -> ApiClient:
    return ApiClient(RelayAddress(f"http://127.0.0.1:{server.server_address[1]}", None))


def test_a_dropped_stream_resumes_with_last_event_id(
    dropping_server: http.server.ThreadingHTTPServer,
) -> None:
    delays: list[float] = []
    events = stream_events(client_of(dropping_server), {"for": "a"}, last_event_id=0,
                           sleep=delays.append)
    received = [next(events) for _ in range(3)]
    events.close()
    assert [e.data for e in received] == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert OneEventPerConnection.seen_last_ids == ["0", "1", "2"]
    assert delays == [0.25, 0.25]  # each reconnect succeeded, so the backoff never grew


def test_retries_are_bounded_with_growing_backoff(
    dropping_server: http.server.ThreadingHTTPServer,
) -> None:
    delays: list[float] = []
    events = stream_events(client_of(dropping_server), {}, sleep=delays.append)
    assert next(events).data == {"n": 1}
    dropping_server.shutdown()
    dropping_server.server_close()
    with pytest.raises(CliError, match="lost the event stream") as caught:
        next(events)
    assert caught.value.code == 3
    assert delays == [0.25, 0.5, 1.0, 2.0, 4.0, 5.0]
