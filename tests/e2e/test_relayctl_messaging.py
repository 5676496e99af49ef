"""relayctl's agent-side commands as users run them: a real relayd subprocess with a token, and
relayctl as real subprocesses finding it through AGENT_RELAY_URL / AGENT_RELAY_TOKEN."""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from relayctl.main import main as relayctl_main
from relayctl.provider_env import provider_agent_id, short_hostname
from tests.helpers import RelaydProcess

TOKEN = "e2e-admin-token-123"
INTEGRATION_TOKEN = "e2e-integration-token"
INTEGRATIONS = [{"name": "ci", "token": INTEGRATION_TOKEN, "scopes": ["tasks:create"]}]


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelaydProcess]:
    env = {"AGENT_RELAY_TOKEN": TOKEN, "AGENT_RELAY_INTEGRATIONS": json.dumps(INTEGRATIONS)}
    process = RelaydProcess(tmp_path_factory.mktemp("relay"), env).start()
    yield process
    process.stop()


def cli_env(relay_url: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    """A clean environment: nothing from the caller's AGENT_RELAY_* or user config leaks in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RELAY_")}
    config = tmp / "cli-config.toml"
    if not config.exists():
        config.write_text("")
    env.update(AGENT_RELAY_CONFIG=str(config), XDG_RUNTIME_DIR=str(tmp),
               XDG_CONFIG_HOME=str(tmp / "xdg-config"))
    for var in ("PORT", "HOST", "DB_PATH"):
        env.pop(var, None)
    if relay_url is not None:
        env.update(AGENT_RELAY_URL=relay_url, AGENT_RELAY_TOKEN=TOKEN)
    env.update(extra)
    return env


def run(env: dict[str, str], *args: str, timeout: float = 15) -> Result:
    proc = subprocess.run([sys.executable, "-m", "relayctl.main", *args], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)
    return Result(proc.returncode, proc.stdout, proc.stderr)


def ok(env: dict[str, str], *args: str) -> Result:
    result = run(env, *args)
    assert result.code == 0, result
    return result


@pytest.fixture
def env(relay: RelaydProcess, tmp_path: Path) -> dict[str, str]:
    assert relay.url is not None
    return cli_env(relay.url, tmp_path)


def api(env: dict[str, str], path: str, body: dict[str, Any],
        token: str | None = TOKEN) -> dict[str, Any]:
    """Direct HTTP for test setup, so the relayctl subprocesses are the ones under test."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(env["AGENT_RELAY_URL"] + "/api" + path,
                                     data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def register(env: dict[str, str], *ids: str, tags: str = "e2e") -> None:
    for agent_id in ids:
        api(env, "/agents", {"id": agent_id, "tags": [tags]}, env.get("AGENT_RELAY_TOKEN"))


def test_send_and_inbox_in_human_and_json_form(env: dict[str, str]) -> None:
    register(env, "ann", "ben")
    sent = ok(env, "send", "ben", "the build is green", "--from", "ann", "--subject", "CI")
    assert "delivered to ben" in sent.out
    human = ok(env, "inbox", "--for", "ben")
    line = human.out.strip().splitlines()[-1]
    assert "ann (sent by admin) → ben" in line
    assert "CI: the build is green" in line and "[new]" in line
    listing = ok(env, "inbox", "--for", "ben", "--json").json()
    assert [m["body"] for m in listing["messages"]] == ["the build is green"]
    assert listing["cursor"] >= listing["messages"][0]["id"]

    reply = ok(env, "send", "ann", "thanks", "--from", "ben", "--json",
               "--reply-to", str(listing["messages"][0]["id"])).json()
    assert reply["threadId"] == listing["messages"][0]["id"]
    assert reply["recipients"] == ["ann"]


def test_mark_read_and_unread_filter(env: dict[str, str]) -> None:
    register(env, "cat", "dan")
    ok(env, "send", "dan", "one", "--from", "cat")
    ok(env, "send", "dan", "two", "--from", "cat")
    first = ok(env, "inbox", "--for", "dan", "--unread", "--mark-read", "--json").json()
    assert [m["body"] for m in first["messages"]] == ["one", "two"]
    assert all(m["read"] for m in first["messages"])
    again = ok(env, "inbox", "--for", "dan", "--unread")
    assert again.out.strip() == "no messages for dan"


def test_inbox_wait_returns_a_message_sent_meanwhile_and_body_reads_stdin(
    env: dict[str, str],
) -> None:
    register(env, "uma", "vic")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "relayctl.main", "inbox", "--for", "vic", "--wait", "10"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        time.sleep(0.3)  # most likely already waiting; if not, the message is simply listed
        sent = subprocess.run([sys.executable, "-m", "relayctl.main", "send", "vic", "-",
                               "--from", "uma"], env=env, input="from a pipe\n",
                              capture_output=True, text=True, timeout=15)
        assert sent.returncode == 0, sent.stderr
        out, _ = waiting.communicate(timeout=10)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0
    assert "uma (sent by admin) → vic" in out and "from a pipe" in out


def test_idempotency_key_returns_the_first_message(env: dict[str, str]) -> None:
    register(env, "eve")
    args = ("send", "eve", "once", "--from", "ops", "--idempotency-key", "k-1", "--json")
    first, second = ok(env, *args).json(), ok(env, *args).json()
    assert first["id"] == second["id"]
    inbox = ok(env, "inbox", "--for", "eve", "--json").json()
    assert len(inbox["messages"]) == 1


def test_claimable_message_has_exactly_one_winner(env: dict[str, str]) -> None:
    register(env, "fay", "gus", tags="claimers")
    sent = ok(env, "send-claimable", "tag:claimers", "fix the flaky test", "--from", "ci",
              "--json").json()
    assert sorted(sent["recipients"]) == ["fay", "gus"]
    won = ok(env, "claim", str(sent["id"]), "--agent", "fay")
    assert won.out.strip() == f"claimed message #{sent['id']} for fay"
    lost = run(env, "claim", str(sent["id"]), "--agent", "gus")
    assert lost.code == 1
    assert lost.out == ""
    assert lost.err.strip() == (
        f"relayctl: message {sent['id']} is already claimed by 'fay' (already_claimed)"
    )


class LineReader:
    """Lines of a child's pipe, read on a thread, so a test can wait with a timeout."""

    def __init__(self, stream: Any) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        with stream:  # closed at EOF: the child has exited
            for line in stream:
                self.lines.put(line)

    def wait_for(self, fragment: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if fragment in line:
                return line


def start_watch(env: dict[str, str], *args: str) -> tuple[subprocess.Popen[str], LineReader,
                                                           LineReader]:
    proc = subprocess.Popen([sys.executable, "-m", "relayctl.main", "watch", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL)
    out, err = LineReader(proc.stdout), LineReader(proc.stderr)
    err.wait_for("watching events")
    return proc, out, err


def test_watch_count_prints_events_sent_meanwhile_and_stops(env: dict[str, str]) -> None:
    register(env, "hal", "ida")
    proc, out, _ = start_watch(env, "--for", "ida", "--count", "2", "--timeout", "15",
                               "--json", "--type", "message")
    ok(env, "send", "ida", "first", "--from", "hal")
    ok(env, "send", "ida", "second", "--from", "hal")
    assert proc.wait(timeout=10) == 0
    events = [json.loads(out.wait_for("message.new")) for _ in range(2)]
    assert [e["data"]["body"] for e in events] == ["first", "second"]
    assert events[0]["id"] < events[1]["id"]


def test_watch_human_output_and_timeout(env: dict[str, str]) -> None:
    register(env, "jo", "kim")
    proc, out, _ = start_watch(env, "--for", "kim", "--timeout", "1")
    ok(env, "send", "kim", "hello kim", "--from", "jo")
    line = out.wait_for("message.new")
    assert "jo (sent by admin) → kim" in line and "hello kim" in line
    assert proc.wait(timeout=10) == 0


def test_label_tags_and_agents(env: dict[str, str]) -> None:
    assert ok(env, "register", "--id", "lea").out.startswith("registered lea [online]")
    assert 'lea "Lea L."' in ok(env, "label", "lea", "Lea L.").out
    tagged = ok(env, "tags", "lea", "red", "green,blue", "--json").json()
    assert tagged["tags"] == ["red", "green", "blue"]
    found = ok(env, "agents", "--tag", "green", "--json").json()
    assert [a["id"] for a in found["agents"]] == ["lea"]
    listing = ok(env, "agents", "--tag", "green")
    assert listing.out.startswith('lea "Lea L." [online]')
    assert "tags=red,green,blue" in listing.out
    missing = run(env, "label", "nobody-here", "x")
    assert missing.code == 1 and "agent 'nobody-here' is not registered" in missing.err


def test_register_from_the_provider_environment(env: dict[str, str], tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text('[profiles.rev]\nlabel = "Reviewer"\ntags = ["review"]\n'
                        'caps = ["chat", "review"]\napproval = "guarded"\n')
    project = tmp_path / "proj"
    project.mkdir()
    provider = {**env, "AGENT_RELAY_SESSION": "sess-1", "AGENT_RELAY_PROFILE": "rev",
                "AGENT_RELAY_PROFILES_FILE": str(profiles), "AGENT_RELAY_TAGS": "review,e2e"}
    proc = subprocess.run([sys.executable, "-m", "relayctl.main", "register", "--json"],
                          env=provider, cwd=project, capture_output=True, text=True, timeout=15)
    assert proc.returncode == 0, proc.stderr
    agent = json.loads(proc.stdout)
    assert agent["id"] == provider_agent_id(short_hostname(), "proj", "sess-1")
    assert (agent["label"], agent["tags"], agent["approval"]) == ("Reviewer", ["review", "e2e"],
                                                                  "guarded")
    assert agent["capabilities"] == ["chat", "review"]
    assert agent["project"] == "proj"
    # The same session's default --for is that agent.
    ok(env, "send", agent["id"], "welcome", "--from", "ops")
    inbox = subprocess.run([sys.executable, "-m", "relayctl.main", "inbox"], env=provider,
                           cwd=project, capture_output=True, text=True, timeout=15)
    assert "welcome" in inbox.stdout


def test_heartbeat_registers_again_when_the_relay_forgot_the_agent(env: dict[str, str]) -> None:
    provider = {**env, "AGENT_RELAY_AGENT_ID": "wes", "AGENT_RELAY_LABEL": "Wes"}
    first = ok(provider, "heartbeat", "--status", "busy")
    assert first.out.startswith('registered again: wes "Wes" [busy]')
    second = ok(provider, "heartbeat", "--json").json()
    assert (second["id"], second["status"], second["label"]) == ("wes", "busy", "Wes")


def test_pair_session_from_invite_to_hangup(env: dict[str, str]) -> None:
    register(env, "max", "ned", tags="pairing")
    started = ok(env, "pair", "start", "ned", "--from", "max", "--objective", "refactor",
                 "--json").json()
    assert started["status"] == "pending"
    pair_id = str(started["id"])
    accepted = ok(env, "pair", "accept", pair_id, "--agent", "ned")
    assert accepted.out.startswith(f"accepted pair {pair_id} [active] max ↔ ned")
    ok(env, "pair", "say", pair_id, "shall we start?", "--from", "ned")
    assert "shall we start?" in ok(env, "inbox", "--for", "max").out
    ended = ok(env, "pair", "hangup", pair_id, "--agent", "max", "--reason", "done")
    assert "[ended]" in ended.out and "done" in ended.out
    listed = ok(env, "pair", "list", "--agent", "ned", "--json").json()
    assert [p["status"] for p in listed["pairs"]] == ["ended"]
    outsider = run(env, "pair", "accept", pair_id, "--agent", "max")
    assert outsider.code == 1 and "(invalid_state)" in outsider.err


def test_tasks_list_claim_and_status(env: dict[str, str]) -> None:
    register(env, "oli", "pam", tags="oncall")
    event = {"type": "alert", "title": "disk almost full", "target": "tag:oncall"}
    task = api(env, "/integrations/events", event, INTEGRATION_TOKEN)["task"]
    listed = ok(env, "tasks", "--status", "open", "--json").json()
    assert task["id"] in [t["id"] for t in listed["tasks"]]
    assert f"task {task['id']} [open]" in ok(env, "tasks", "--target", "tag:oncall").out
    ok(env, "tasks", "claim", str(task["id"]), "--agent", "oli")
    lost = run(env, "tasks", "claim", str(task["id"]), "--agent", "pam")
    assert lost.code == 1 and "(already_claimed)" in lost.err
    moved = ok(env, "tasks", "status", str(task["id"]), "in_progress", "--agent", "oli",
               "--progress", "50", "--json").json()
    assert (moved["status"], moved["progress"]) == ("in_progress", 50)
    done = ok(env, "tasks", "status", str(task["id"]), "done", "--agent", "oli",
              "--result", "cleaned /tmp")
    assert f"task {task['id']} [done" in done.out


def test_wrong_token_is_one_line_and_exit_1(env: dict[str, str]) -> None:
    result = run({**env, "AGENT_RELAY_TOKEN": "not-the-token"}, "agents")
    assert result.code == 1
    assert result.err.count("\n") == 1
    assert "(unauthorized)" in result.err and "AGENT_RELAY_TOKEN" in result.err
    missing = run({k: v for k, v in env.items() if k != "AGENT_RELAY_TOKEN"}, "agents")
    assert missing.code == 1 and "(unauthorized)" in missing.err
    stream = run({**env, "AGENT_RELAY_TOKEN": "not-the-token"}, "watch", "--for", "x")
    assert stream.code == 1 and "(unauthorized)" in stream.err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_relay_down_is_exit_3_in_one_line(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    env = cli_env(url, tmp_path)
    for args in (("agents",), ("send", "x", "hi", "--from", "y"), ("watch", "--for", "x")):
        result = run(env, *args)
        assert result.code == 3, result
        assert result.err == (f"relayctl: no relay answers at {url}; start it with `relayd` or "
                              "`relayctl daemon start`\n")


def test_without_url_the_local_config_and_listen_record_lead_to_the_relay(
    relay: RelaydProcess, tmp_path: Path,
) -> None:
    config = tmp_path / "local.toml"
    # The port is wrong on purpose: the live relayd's listen.json next to its socket wins.
    socket_path = relay.env["AGENT_RELAY_SOCKET"]
    config.write_text(f'port = 1\ntoken = "{TOKEN}"\nsocket_path = "{socket_path}"\n')
    env = cli_env(None, tmp_path, AGENT_RELAY_CONFIG=str(config))
    assert "agents" in ok(env, "agents", "--json").json()


def test_watch_resumes_after_the_relay_restarts(tmp_path: Path) -> None:
    first = RelaydProcess(tmp_path).start()
    try:
        assert first.url is not None
        env = cli_env(first.url, tmp_path, AGENT_RELAY_TOKEN="")
        register(env, "quin", "rey")
        proc, out, err = start_watch(env, "--for", "rey", "--count", "2", "--timeout", "20")
        ok(env, "send", "rey", "before", "--from", "quin")
        assert "before" in out.wait_for("message.new")
    finally:
        first.stop()
    port = first.url.rsplit(":", 1)[1]
    second = RelaydProcess(tmp_path, {"PORT": port}).start()
    try:
        ok(env, "send", "rey", "after", "--from", "quin")
        assert "after" in out.wait_for("message.new")
        assert proc.wait(timeout=10) == 0
        err.wait_for("reconnected")
    finally:
        second.stop()
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize(
    "command",
    [["send"], ["send-claimable"], ["inbox"], ["watch"], ["claim"], ["register"], ["heartbeat"],
     ["label"],
     ["tags"], ["agents"], ["pair"], ["pair", "start"], ["pair", "accept"], ["pair", "reject"],
     ["pair", "say"], ["pair", "hangup"], ["pair", "list"], ["tasks"], ["tasks", "claim"],
     ["tasks", "status"]],
)
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert relayctl_main([*command, "--help"]) == 0
    assert "usage: relayctl " + " ".join(command) in capsys.readouterr().out


def test_bad_usage_is_exit_2(env: dict[str, str]) -> None:
    assert run(env, "agents", "--status", "asleep").code == 2
    assert run(env, "claim", "not-a-number").code == 2
