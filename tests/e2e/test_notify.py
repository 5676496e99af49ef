"""systemd notify protocol against a real relayd, with a real AF_UNIX datagram NOTIFY_SOCKET."""

from __future__ import annotations

import itertools
import signal
import socket
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import RelaydProcess


class NotifySocket:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float = 10.0) -> dict[str, str]:
        self.sock.settimeout(timeout)
        raw = self.sock.recv(4096).decode()
        message = dict(line.split("=", 1) for line in raw.splitlines() if "=" in line)
        self.messages.append(message)
        return message

    def wait_for(self, key: str, timeout: float = 10.0) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = self.receive(max(0.01, deadline - time.monotonic()))
            if key in message:
                return message
        raise TimeoutError(f"no {key} within {timeout}s; got {self.messages}")


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify.sock")
    yield listener
    listener.sock.close()


def _healthy(url: str) -> bool:
    with urllib.request.urlopen(f"{url}/api/health", timeout=5) as resp:
        return bool(resp.status == 200)


def test_ready_after_serving_then_reload_then_stopping(
    relayd_process: Callable[..., RelaydProcess], notify_socket: NotifySocket
) -> None:
    relayd = relayd_process(env={"NOTIFY_SOCKET": str(notify_socket.path)}, expect_serving=False)
    ready = notify_socket.wait_for("READY")
    relayd.wait_serving(10)
    assert ready["READY"] == "1"
    assert ready["STATUS"].startswith("serving http://127.0.0.1:")
    assert relayd.url is not None and _healthy(relayd.url)  # READY=1 means the port answers

    before = time.monotonic_ns() // 1000
    relayd.signal(signal.SIGHUP)
    reloading = notify_socket.wait_for("RELOADING")
    after = time.monotonic_ns() // 1000
    assert reloading["RELOADING"] == "1"
    assert before <= int(reloading["MONOTONIC_USEC"]) <= after
    assert notify_socket.wait_for("READY")["READY"] == "1"

    relayd.signal(signal.SIGTERM)
    assert notify_socket.wait_for("STOPPING")["STOPPING"] == "1"
    assert relayd.wait(15) == 0


def test_watchdog_pings_at_half_the_interval(
    relayd_process: Callable[..., RelaydProcess], notify_socket: NotifySocket
) -> None:
    relayd = relayd_process(
        env={"NOTIFY_SOCKET": str(notify_socket.path), "WATCHDOG_USEC": "200000"}
    )
    notify_socket.wait_for("READY")
    pings = []
    for _ in range(4):
        notify_socket.wait_for("WATCHDOG", timeout=2)
        pings.append(time.monotonic())
    gaps = sorted(b - a for a, b in itertools.pairwise(pings))
    assert gaps[0] > 0.05, gaps  # WATCHDOG_USEC/2 = 0.1 s apart, not a flood
    assert gaps[1] < 0.3, gaps  # and regularly (one slow gap tolerated on a busy machine)
    relayd.signal(signal.SIGTERM)
    assert relayd.wait(15) == 0


def test_without_notify_socket_nothing_is_sent(
    relayd_process: Callable[..., RelaydProcess], notify_socket: NotifySocket
) -> None:
    relayd = relayd_process(env={"WATCHDOG_USEC": "200000", "NOTIFY_SOCKET": ""})
    with pytest.raises(TimeoutError):
        notify_socket.receive(timeout=0.5)
    relayd.signal(signal.SIGTERM)
    assert relayd.wait(15) == 0
