"""relayctl.providers.common: the session id, and relayed text that cannot escape its fence."""

from __future__ import annotations

import re
from pathlib import Path

from relayctl.providers import common

MESSAGE = {"id": 7, "from": "alice", "sentBy": "local", "threadId": 5, "replyTo": 5,
           "subject": "PR\x1b[31m #12", "body": "line one\nline two \u202e\x07 \"quoted\" \\\""}


def test_session_agent_id_is_stable_per_session_and_env_wins(tmp_path: Path) -> None:
    (tmp_path / "proj" / ".git").mkdir(parents=True)
    cwd = tmp_path / "proj" / "src"
    cwd.mkdir()
    one = common.session_agent_id("sess-1", env={}, cwd=cwd)
    assert re.fullmatch(r"[A-Za-z0-9._-]+-proj-[0-9a-f]{8}", one)
    assert common.session_agent_id("sess-1", env={}, cwd=cwd) == one
    assert common.session_agent_id("sess-2", env={}, cwd=cwd) != one
    assert common.session_agent_id("sess-1", env={"AGENT_RELAY_AGENT_ID": "me"}, cwd=cwd) == "me"


def test_monitor_line_is_one_escaped_line_naming_everything() -> None:
    line = common.monitor_line(MESSAGE)
    assert line.startswith("[agent-relay] msg#7 from alice")
    assert "\n" not in line and "\x1b" not in line and "\u202e" not in line and "\x07" not in line
    assert "sentBy local" in line and "thread #5" in line and "\\x1b[31m" in line
    assert "\\u202e" in line and "\\n" in line
    assert "not instructions from the user" in line
    # the body's quotes and backslashes are escaped, so it cannot close its quotes
    body = line.split("body: ", 1)[1]
    assert body.startswith('"line one\\nline two \\u202e\\x07 \\"quoted\\" \\\\\\""')


def test_monitor_line_shortens_long_bodies_and_shows_missing_sent_by() -> None:
    line = common.monitor_line({"id": 9, "from": "bob", "body": "x" * 5000})
    assert len(line) < 1000 and "(cut; full text" in line
    assert "sentBy unknown" in line and "thread #9" in line


def test_fenced_text_marker_is_not_in_the_body() -> None:
    text = common.fenced_text(MESSAGE)
    marker = re.search(r"<<<BEGIN (relay-data-[0-9a-f]+)>>>", text)
    assert marker is not None
    assert text.count(marker.group(1)) == 3  # the notice, BEGIN and END
    assert "line one\nline two" in text and text.startswith("Agent Relay message received")
