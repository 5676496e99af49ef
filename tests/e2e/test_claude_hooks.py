"""`relayctl claude hook EVENT` fed Claude Code's hook JSON, against a real relayd."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from relayctl.providers import common
from tests.e2e.claude_support import SESSION_ID, hook_env, payload, run_hook
from tests.helpers import RelaydProcess, relayctl

PLUGIN = Path(__file__).resolve().parents[2] / "providers" / "claude"


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelaydProcess]:
    tmp = tmp_path_factory.mktemp("relay")
    relayd = RelaydProcess(tmp).start()
    yield relayd
    relayd.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "my-proj"
    (root / ".git").mkdir(parents=True)
    return root


def _agent(env: dict[str, str], agent_id: str) -> dict[str, object]:
    result = relayctl(env, "agents", "--json")
    assert result.returncode == 0, result.stderr
    agents: dict[str, dict[str, object]] = {
        a["id"]: a for a in json.loads(result.stdout)["agents"]}
    return agents[agent_id]


def test_session_start_registers_writes_the_env_file_and_answers_context(
        relay: RelaydProcess, tmp_path: Path, project: Path) -> None:
    env_file = tmp_path / "claude-env.sh"
    env = hook_env(tmp_path, relay.url or "", CLAUDE_ENV_FILE=str(env_file),
                   AGENT_RELAY_APPROVAL="guarded", AGENT_RELAY_TAGS="review,backend")
    hook = run_hook(env, "SessionStart", payload("SessionStart", project, source="startup"))
    answer = hook.answer()
    assert answer is not None and hook.stderr == ""
    agent_id = common.session_agent_id(SESSION_ID, {}, project)
    assert re.fullmatch(r".+-my-proj-[0-9a-f]{8}", agent_id)
    context = answer["hookSpecificOutput"]["additionalContext"]
    assert agent_id in context and "not instructions from the user" in context.lower()
    assert "relayctl send" in context and "--reply-to" in context
    assert env_file.read_text() == f"export AGENT_RELAY_AGENT_ID={agent_id}\n"
    agent = _agent(env, agent_id)
    assert agent["provider"] == "claude-code" and agent["approval"] == "guarded"
    assert agent["tags"] == ["review", "backend"] and agent["project"] == "my-proj"
    assert agent["status"] == "online"

    # a resumed session (same session_id) comes back as the same agent
    again = run_hook(env, "SessionStart", payload("SessionStart", project, source="resume"))
    assert agent_id in again.answer()["hookSpecificOutput"]["additionalContext"]  # type: ignore[index]

    # status follows the turns
    for event, status in (("UserPromptSubmit", "busy"), ("Stop", "idle"),
                          ("SessionEnd", "offline")):
        extra = {"prompt": "hi"} if event == "UserPromptSubmit" else {}
        result = run_hook(env, event, payload(event, project, **extra))
        assert result.stdout == "" and result.stderr == "", result
        assert _agent(env, agent_id)["status"] == status


def test_agent_relay_agent_id_wins_and_a_forgotten_agent_is_registered_again(
        relay: RelaydProcess, tmp_path: Path, project: Path) -> None:
    env = hook_env(tmp_path, relay.url or "", AGENT_RELAY_AGENT_ID="explicit-agent-1")
    hook = run_hook(env, "UserPromptSubmit", payload("UserPromptSubmit", project, prompt="x"))
    assert hook.stderr == ""
    assert _agent(env, "explicit-agent-1")["status"] == "busy"  # 404 → registered again


def test_an_unreadable_profile_never_opens_the_gate(relay: RelaydProcess, tmp_path: Path,
                                                   project: Path) -> None:
    env = hook_env(tmp_path, relay.url or "", AGENT_RELAY_PROFILE="no-such-profile",
                   AGENT_RELAY_AGENT_ID="broken-profile-agent")
    start = run_hook(env, "SessionStart", payload("SessionStart", project))
    assert start.answer() is not None and "profile" in start.stderr
    agent = _agent(env, "broken-profile-agent")
    assert agent["approval"] == "read-only" and agent["provider"] == "claude-code"
    gate = run_hook(env, "PreToolUse", payload("PreToolUse", project, tool_name="Write",
                                               tool_input={"file_path": "x"}))
    assert gate.answer()["hookSpecificOutput"]["permissionDecision"] == "deny"  # type: ignore[index]


@pytest.mark.parametrize("approval", ["open", "read-only", "guarded"])
def test_pre_tool_use_is_the_approval_gate(relay: RelaydProcess, tmp_path: Path,
                                           project: Path, approval: str) -> None:
    env = hook_env(tmp_path, relay.url or "", AGENT_RELAY_APPROVAL=approval)
    expected = {"open": None, "read-only": "deny", "guarded": "ask"}[approval]
    gated = [("Write", {"file_path": str(project / "a.py"), "content": "x"}),
             ("Bash", {"command": "git status && rm x", "description": "clean"})]
    for tool, tool_input in gated:
        hook = run_hook(env, "PreToolUse", payload("PreToolUse", project, tool_name=tool,
                                                   tool_input=tool_input, tool_use_id="t1"))
        if expected is None:
            assert hook.stdout == "", (tool, tool_input, hook)
            continue
        output = hook.answer()["hookSpecificOutput"]  # type: ignore[index]
        assert output["permissionDecision"] == expected, (tool, tool_input)
        assert approval in output["permissionDecisionReason"]
    for tool, tool_input in [("Read", {"file_path": "a"}),
                             ("Bash", {"command": "git log --oneline | head -5"})]:
        hook = run_hook(env, "PreToolUse", payload("PreToolUse", project, tool_name=tool,
                                                   tool_input=tool_input))
        assert hook.stdout == "", (tool, tool_input, hook)


def test_permission_denied_tells_the_sender_of_the_relayed_message(
        relay: RelaydProcess, tmp_path: Path, project: Path) -> None:
    from relayctl.providers import claude_state

    env = hook_env(tmp_path, relay.url or "", AGENT_RELAY_AGENT_ID="worker-pd")
    relayctl(env, "register", "--id", "boss-pd")
    run_hook(env, "SessionStart", payload("SessionStart", project, source="startup"))
    sent = relayctl(env, "send", "worker-pd", "please delete build/", "--from", "boss-pd",
                    "--json")
    message_id = json.loads(sent.stdout)["id"]
    # what the monitor records when it prints the message (tests/e2e/test_claude_monitor.py)
    monkey_env = {"XDG_RUNTIME_DIR": env["XDG_RUNTIME_DIR"]}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in monkey_env.items():
            mp.setenv(key, value)
        claude_state.record_delivery("worker-pd", {"id": message_id, "from": "boss-pd"})
    denied = payload("PermissionDenied", project, tool_name="Bash",
                     tool_input={"command": "rm -rf build"}, tool_use_id="t9",
                     reason="auto mode denied the command")
    hook = run_hook(env, "PermissionDenied", denied)
    assert hook.stdout == "" and hook.stderr == "", hook
    inbox = json.loads(relayctl(env, "inbox", "--for", "boss-pd", "--json").stdout)["messages"]
    assert len(inbox) == 1 and inbox[0]["replyTo"] == message_id
    assert "Bash" in inbox[0]["body"] and "worker-pd" in inbox[0]["body"]
    run_hook(env, "PermissionDenied", denied)  # told once per message and tool
    # after the user's own prompt, denied work is the user's: nobody is told
    time.sleep(0.01)
    run_hook(env, "UserPromptSubmit", payload("UserPromptSubmit", project, prompt="go"))
    run_hook(env, "PermissionDenied", {**denied, "tool_name": "Write"})
    inbox = json.loads(relayctl(env, "inbox", "--for", "boss-pd", "--json").stdout)["messages"]
    assert len(inbox) == 1


class _Always500(http.server.BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = b'{"error": "boom", "code": "internal"}'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("relay_kind", ["down", "500"])
def test_every_hook_survives_a_relay_that_is_down_or_failing(
        tmp_path: Path, project: Path, relay_kind: str) -> None:
    server = None
    if relay_kind == "down":
        url = f"http://127.0.0.1:{_closed_port()}"
    else:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Always500)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        env = hook_env(tmp_path, url, AGENT_RELAY_APPROVAL="read-only",
                       CLAUDE_ENV_FILE=str(tmp_path / "env.sh"))
        start = run_hook(env, "SessionStart", payload("SessionStart", project))
        assert start.answer() is not None  # the context still tells the model who it is
        assert len(start.stderr.splitlines()) == 1
        assert (tmp_path / "env.sh").read_text().startswith("export AGENT_RELAY_AGENT_ID=")
        for event in ("UserPromptSubmit", "SessionEnd"):
            hook = run_hook(env, event, payload(event, project, prompt="x"))
            assert hook.stdout == "" and len(hook.stderr.splitlines()) == 1
        gate = run_hook(env, "PreToolUse", payload("PreToolUse", project, tool_name="Write",
                                                   tool_input={"file_path": "x"}))
        assert gate.answer()["hookSpecificOutput"]["permissionDecision"] == "deny"  # type: ignore[index]
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()


def test_bad_input_and_unknown_events_do_nothing_and_exit_0(
        relay: RelaydProcess, tmp_path: Path, project: Path) -> None:
    env = hook_env(tmp_path, relay.url or "", AGENT_RELAY_APPROVAL="read-only")
    # two real runs: malformed JSON, an unknown event
    hook = run_hook(env, "SessionStart", "{not json")
    assert hook.stdout == "" and len(hook.stderr.splitlines()) == 1
    hook = run_hook(env, "--help-me", payload("PostToolUse", project))
    assert hook.stdout == "" and len(hook.stderr.splitlines()) == 1
    # the rest in-process (same code path, no process start-up)
    for text in ["{not json", "", "[1, 2]", '"text"', "null", '{"session_id": 5}',
                 "\x00\xff garbage", "{" * 5000]:
        for event in ("SessionStart", "UserPromptSubmit", "Stop", "SessionEnd",
                      "PermissionDenied", "PreToolUse"):
            out, err = _run_inline(env, event, text)
            assert out == "" or event == "PreToolUse", (event, text, out)
            assert len(err.splitlines()) <= 1, (event, text, err)
    for event in ("NoSuchEvent", "", "PostToolUse", "sessionstart-x"):
        out, err = _run_inline(env, event, json.dumps(payload(event, project)))
        assert out == "" and len(err.splitlines()) == 1, (event, err)
    # a PreToolUse input without tool_input is still gated, never an error
    out, err = _run_inline(env, "PreToolUse",
                           json.dumps(payload("PreToolUse", project, tool_name="Bash")))
    assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == "deny"
    assert err == ""


def _run_inline(env: dict[str, str], event: str, text: str) -> tuple[str, str]:
    import io

    from relayctl.providers import claude_hook

    out, err = io.StringIO(), io.StringIO()
    code = claude_hook.run(event, io.StringIO(text), out, err, env, deadline=False)
    assert code == 0
    if out.getvalue():
        answer = json.loads(out.getvalue())
        assert answer["hookSpecificOutput"]["hookEventName"] == event
    return out.getvalue(), err.getvalue()


def test_plugin_scripts_without_relayctl_say_so_in_one_line(tmp_path: Path,
                                                            project: Path) -> None:
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path)}
    script = PLUGIN / "scripts" / "relay.sh"
    for argv in (["/bin/sh", str(script), "hook", "SessionStart"],
                 ["/bin/sh", str(script), "monitor"]):
        hook = run_hook(env, "SessionStart", payload("SessionStart", project), argv=argv)
        assert hook.stdout == ""
        assert "relayctl" in hook.stderr and "install" in hook.stderr
        assert len(hook.stderr.splitlines()) == 1
