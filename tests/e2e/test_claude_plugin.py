"""The Claude Code plugin with the real `claude` CLI (CI installs it from npm, pinned):
`claude plugin validate --strict`, and installing it into a sandboxed HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from relayd import __version__
from tests.helpers import cli_env, relayctl

ROOT = Path(__file__).resolve().parents[2]
PLUGIN = ROOT / "providers" / "claude"
CLAUDE = shutil.which("claude")
needs_claude = pytest.mark.skipif(
    CLAUDE is None,
    reason="the claude CLI is not installed (npm install -g @anthropic-ai/claude-code@2.1.332;"
    " .ci/run does)",
)


def _claude_env(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env = cli_env(tmp, HOME=str(home), DISABLE_AUTOUPDATER="1",
                  CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1")
    env.pop("CLAUDE_CONFIG_DIR", None)
    return env


def _claude(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    assert CLAUDE is not None
    return subprocess.run([CLAUDE, *args], env=env, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, check=False)


def test_plugin_files_agree_with_each_other_and_the_package() -> None:
    manifest = json.loads((PLUGIN / ".claude-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "agent-relay" and manifest["version"] == __version__
    root_market = json.loads((ROOT / ".claude-plugin" / "marketplace.json").read_text())
    wheel_market = json.loads((ROOT / "providers" / ".claude-plugin" /
                               "marketplace.json").read_text())
    assert root_market["name"] == wheel_market["name"] == "agent-relay"
    (entry,) = root_market["plugins"]
    (wheel_entry,) = wheel_market["plugins"]
    assert entry["source"] == "./providers/claude" and wheel_entry["source"] == "./claude"
    assert {**entry, "source": ""} == {**wheel_entry, "source": ""}
    assert entry["version"] == __version__
    hooks = json.loads((PLUGIN / "hooks" / "hooks.json").read_text())["hooks"]
    assert set(hooks) == {"SessionStart", "UserPromptSubmit", "Stop", "SessionEnd",
                          "PreToolUse", "PermissionDenied"}
    for event, groups in hooks.items():
        (command,) = [h["command"] for g in groups for h in g["hooks"]]
        assert command == f'sh "${{CLAUDE_PLUGIN_ROOT}}/scripts/relay.sh" hook {event}'
    (monitor,) = json.loads((PLUGIN / "monitors" / "monitors.json").read_text())
    assert monitor["command"] == 'sh "${CLAUDE_PLUGIN_ROOT}/scripts/relay.sh" monitor'
    skills = {p.parent.name for p in (PLUGIN / "skills").glob("*/SKILL.md")}
    assert skills == {"message", "pair", "send-claimable", "reply", "status", "label", "tags",
                      "disconnect"}
    for skill in skills:
        assert "relayctl" in (PLUGIN / "skills" / skill / "SKILL.md").read_text()


@needs_claude
@pytest.mark.parametrize("target", ["providers/claude", ".", "providers"])
def test_claude_plugin_validate_strict(tmp_path: Path, target: str) -> None:
    result = _claude(_claude_env(tmp_path), "plugin", "validate", "--strict", str(ROOT / target))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation passed" in result.stdout


@needs_claude
def test_provider_install_claude_installs_the_plugin_into_a_sandboxed_home(
        tmp_path: Path) -> None:
    env = _claude_env(tmp_path)
    before = relayctl(env, "provider", "status", "--json", timeout=120)
    assert before.returncode == 0, before.stderr
    (claude,) = [p for p in json.loads(before.stdout)["providers"] if p["name"] == "claude-code"]
    assert claude["pluginInstalled"] is False and claude["problem"] is None

    installed = relayctl(env, "provider", "install", "claude", timeout=240)
    assert installed.returncode == 0, installed.stderr
    assert "installed the agent-relay plugin" in installed.stdout
    listed = _claude(env, "plugin", "list", "--json")
    plugin = {p["id"]: p for p in json.loads(listed.stdout)}["agent-relay@agent-relay"]
    assert plugin["enabled"] is True and plugin["version"] == __version__
    assert (Path(env["HOME"]) / ".claude" / "plugins").is_dir()

    # refresh (what `relayctl upgrade` runs) repeats the install steps and updates both
    refreshed = relayctl(env, "provider", "refresh", "--providers", "claude", "--json",
                         timeout=240)
    assert refreshed.returncode == 0, refreshed.stderr
    (report,) = json.loads(refreshed.stdout)["providers"]
    assert report["refreshed"] is True and report["action"] == "plugin refreshed"
    assert report["pluginInstalled"] is True and report["pluginVersion"] == __version__


def test_provider_status_says_when_claude_is_missing_or_too_old(tmp_path: Path) -> None:
    env = _claude_env(tmp_path)
    env["AGENT_RELAY_CLAUDE_BIN"] = str(tmp_path / "no-such-claude")
    missing = relayctl(env, "provider", "status", "--providers", "claude")
    assert missing.returncode == 0, missing.stderr
    assert "claude-code  the `claude` CLI is not on PATH" in missing.stdout
    old = tmp_path / "old-claude"
    old.write_text("#!/bin/sh\necho '2.1.100 (Claude Code)'\n")  # only what --version prints
    old.chmod(0o755)
    env["AGENT_RELAY_CLAUDE_BIN"] = str(old)
    status = relayctl(env, "provider", "status", "--providers", "claude")
    assert "Claude Code 2.1.100 is older than 2.1.105" in status.stdout
    install = relayctl(env, "provider", "install", "claude")
    assert install.returncode == 1 and "older than 2.1.105" in install.stderr
    assert len(install.stderr.strip().splitlines()) == 1
    assert os.access(old, os.X_OK)
