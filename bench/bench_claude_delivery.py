"""Delivery latency of the Claude Code monitor (issue 8) against a bare SSE client, same run.

    python bench/bench_claude_delivery.py [--messages 200] [--gap-ms 20]

One relayd on loopback, one agent. Two readers follow that agent's messages at once:
- `relayctl claude monitor` (the plugin's monitor): time until its stdout line appears;
- a bare SSE client (http.client on GET /api/events?for=AGENT): time until the event's data.
Each message is sent with POST /api/messages; latency is from just before the POST to the
moment each reader has it. Prints p50/p99 for both and the ratio (target: monitor p99 within
1.5x of the bare client).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELAYCTL = str(Path(sys.executable).parent / "relayctl")
AGENT = "bench-claude-agent"
LINE = re.compile(r"^\[agent-relay\] msg#(\d+) ")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request(port: int, method: str, path: str, body: object = None) -> object:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    payload = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if payload else {}
    conn.request(method, path, body=payload, headers=headers)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return json.loads(data) if data else None


def wait_ready(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            request(port, "GET", "/api/health")
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("relayd did not start")


def bare_reader(port: int, seen: dict[int, float], ready: threading.Event) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", f"/api/events?for={AGENT}", headers={"Accept": "text/event-stream"})
    response = conn.getresponse()
    ready.set()
    event, data = "", ""
    while True:
        raw = response.readline()
        if not raw:
            return
        line = raw.decode().rstrip("\n")
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif not line:
            if event == "message.new":
                seen.setdefault(int(json.loads(data)["id"]), time.monotonic())
            event, data = "", ""


def monitor_reader(proc: subprocess.Popen[str], seen: dict[int, float]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        match = LINE.match(line)
        if match:
            seen.setdefault(int(match.group(1)), time.monotonic())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--gap-ms", type=float, default=20.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-claude-"))
    port = free_port()
    (tmp / "empty.toml").write_text("")
    env = {**os.environ, "PORT": str(port), "DB_PATH": str(tmp / "relay.db"),
           "AGENT_RELAY_SOCKET": str(tmp / "relayd.sock"),
           "AGENT_RELAY_CONFIG": str(tmp / "empty.toml"), "AGENT_RELAY_LOG_LEVEL": "warning",
           "XDG_RUNTIME_DIR": str(tmp)}
    relayd = subprocess.Popen([sys.executable, "-m", "relayd.main"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monitor = None
    try:
        wait_ready(port)
        request(port, "POST", "/api/agents", {"id": AGENT})
        bare_seen: dict[int, float] = {}
        monitor_seen: dict[int, float] = {}
        ready = threading.Event()
        threading.Thread(target=bare_reader, args=(port, bare_seen, ready), daemon=True).start()
        monitor_env = {**env, "AGENT_RELAY_URL": f"http://127.0.0.1:{port}",
                       "AGENT_RELAY_AGENT_ID": AGENT}
        monitor = subprocess.Popen([RELAYCTL, "claude", "monitor"], env=monitor_env,
                                   stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        threading.Thread(target=monitor_reader, args=(monitor, monitor_seen),
                         daemon=True).start()
        ready.wait(10)
        # warm-up: both readers connected and printing
        warm = request(port, "POST", "/api/messages", {"from": "bench", "to": AGENT,
                                                       "body": "warm-up"})
        deadline = time.monotonic() + 15
        while warm["id"] not in monitor_seen and time.monotonic() < deadline:  # type: ignore[index]
            time.sleep(0.01)
        sent: dict[int, float] = {}
        for n in range(args.messages):
            started = time.monotonic()
            answer = request(port, "POST", "/api/messages",
                             {"from": "bench", "to": AGENT, "body": f"message {n}",
                              "subject": "bench"})
            sent[int(answer["id"])] = started  # type: ignore[index]
            time.sleep(args.gap_ms / 1000)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not (set(sent) <= set(monitor_seen)
                                                    and set(sent) <= set(bare_seen)):
            time.sleep(0.02)
        bare = [(bare_seen[i] - t) * 1000 for i, t in sent.items() if i in bare_seen]
        mon = [(monitor_seen[i] - t) * 1000 for i, t in sent.items() if i in monitor_seen]
        print(f"messages sent: {len(sent)}; bare SSE client got {len(bare)}, "
              f"monitor printed {len(mon)}")
        for name, values in (("bare SSE client", bare), ("claude monitor", mon)):
            print(f"{name:>16}: p50 {statistics.median(values):7.2f} ms   "
                  f"p99 {percentile(values, 0.99):7.2f} ms   max {max(values):7.2f} ms")
        print(f"monitor/bare: p50 x{statistics.median(mon) / statistics.median(bare):.2f}, "
              f"p99 x{percentile(mon, 0.99) / percentile(bare, 0.99):.2f} (target p99 <= x1.5)")
        delivered = request(port, "GET", f"/api/messages?for={AGENT}&undelivered=true&limit=1000")
        print(f"left undelivered after the run: {len(delivered['messages'])}")  # type: ignore[index]
    finally:
        if monitor is not None:
            monitor.terminate()
            monitor.wait(10)
        relayd.terminate()
        relayd.wait(15)


if __name__ == "__main__":
    main()
