"""`relayctl provider install codex` / `provider refresh`: the plugin lands in CODEX_HOME, the
user's config.toml keeps everything else, and the real Codex sees the skill and the hook."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from relayctl.providers.codex import install as codex_install
from relayctl.providers.codex.launcher import free_port, wait_ready
from relayd import __version__
from tests.codex_support import CODEX, codex_tmp_dir, needs_codex, rpc_call
from tests.helpers import cli_env, relayctl

USER_CONFIG = """# my Codex settings
model = "gpt-5.6"  # the one I like
approval_policy = "on-request"

[tui]
notifications = true

[plugins."other@elsewhere"]
enabled = false

[marketplaces.agent-relay]
source_type = "local"
source = "/old/place"
"""


@pytest.fixture
def codex_home() -> Iterator[Path]:
    for directory in codex_tmp_dir():
        yield directory / "codex-home"


def test_install_merges_into_config_toml_and_keeps_the_rest(tmp_path: Path,
                                                           codex_home: Path) -> None:
    codex_home.mkdir(parents=True)
    (codex_home / "config.toml").write_text(USER_CONFIG)
    env = cli_env(tmp_path, CODEX_HOME=str(codex_home))
    proc = relayctl(env, "provider", "install", "codex", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["configChanged"] is True and report["version"] == __version__
    text = (codex_home / "config.toml").read_text()
    assert text.startswith("# my Codex settings\nmodel = \"gpt-5.6\"  # the one I like\n")
    assert "/old/place" not in text
    config = tomllib.loads(text)
    assert config["model"] == "gpt-5.6" and config["tui"] == {"notifications": True}
    assert config["plugins"]["other@elsewhere"] == {"enabled": False}
    assert config["plugins"]["agent-relay@agent-relay"] == {"enabled": True}
    market = Path(config["marketplaces"]["agent-relay"]["source"])
    assert (market / ".agents" / "plugins" / "marketplace.json").is_file()
    cache = codex_home / "plugins" / "cache" / "agent-relay" / "agent-relay" / __version__
    manifest = json.loads((cache / ".codex-plugin" / "plugin.json").read_text())
    assert manifest["name"] == "agent-relay" and manifest["version"] == __version__
    assert (cache / "skills" / "agent-relay" / "SKILL.md").is_file()
    assert (cache / "hooks" / "hooks.json").is_file()

    status = json.loads(relayctl(env, "provider", "status", "--providers", "codex",
                                 "--json").stdout)["providers"][0]
    assert (status["installed"], status["pluginVersion"]) == (True, __version__)
    assert "plugin " + __version__ + " installed" in relayctl(
        env, "provider", "status", "--providers", "codex").stdout

    # A second install changes nothing; refresh brings an old version up to date.
    again = json.loads(relayctl(env, "provider", "install", "codex", "--json").stdout)
    assert again["configChanged"] is False
    old = cache.parent / "0.0.1"
    old.mkdir()
    refresh = relayctl(env, "provider", "refresh", "--providers", "codex", "--json")
    assert refresh.returncode == 0, refresh.stderr
    assert json.loads(refresh.stdout)["providers"][0]["refreshed"] is True
    assert not old.exists() and cache.is_dir()


def test_refresh_does_not_install_uninvited_and_bad_toml_changes_nothing(
        tmp_path: Path, codex_home: Path) -> None:
    codex_home.mkdir(parents=True)
    env = cli_env(tmp_path, CODEX_HOME=str(codex_home))
    refresh = relayctl(env, "provider", "refresh", "--providers", "codex", "--json")
    assert json.loads(refresh.stdout)["providers"][0]["refreshed"] is False
    assert list(codex_home.iterdir()) == []
    status = relayctl(env, "provider", "status", "--providers", "codex")
    assert "plugin not installed" in status.stdout
    (codex_home / "config.toml").write_text("model = [unclosed\n")
    proc = relayctl(env, "provider", "install", "codex")
    assert proc.returncode == 1 and len(proc.stderr.strip().splitlines()) == 1
    assert "not valid TOML" in proc.stderr
    assert (codex_home / "config.toml").read_text() == "model = [unclosed\n"
    assert sorted(p.name for p in codex_home.iterdir()) == ["config.toml"]


def test_tables_written_as_dotted_keys_still_merge_to_the_same_settings() -> None:
    text = 'plugins."agent-relay@agent-relay".enabled = false\nmodel = "x"\n'
    merged = codex_install.merged_config(text, {
        ("marketplaces", "agent-relay"): {"source_type": "local", "source": "/m"},
        ("plugins", "agent-relay@agent-relay"): {"enabled": True},
    })
    config = tomllib.loads(merged)
    assert config["model"] == "x"
    assert config["plugins"]["agent-relay@agent-relay"] == {"enabled": True}
    assert config["marketplaces"]["agent-relay"]["source"] == "/m"


@pytest.fixture
def installed_app_server(tmp_path: Path, codex_home: Path) -> Iterator[int]:
    """The real `codex app-server` on a free port, with the plugin installed: its port."""
    assert CODEX is not None
    codex_home.mkdir(parents=True)
    codex_install.install(codex_home)
    port = free_port()
    env = cli_env(tmp_path, CODEX_HOME=str(codex_home))
    app = subprocess.Popen([CODEX, "app-server", "--listen", f"ws://127.0.0.1:{port}"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, app, 20)
        yield port
    finally:
        app.terminate()
        app.wait(10)


@needs_codex
async def test_codex_loads_the_installed_skill_and_hook(tmp_path: Path,
                                                        installed_app_server: int) -> None:
    async with aiohttp.ClientSession() as session, \
            session.ws_connect(f"ws://127.0.0.1:{installed_app_server}") as ws:
        await rpc_call(ws, 1, "initialize", {"clientInfo": {"name": "t", "version": "1"}})
        skills = await rpc_call(ws, 2, "skills/list", {"cwds": [str(tmp_path)]})
        hooks = await rpc_call(ws, 3, "hooks/list", {"cwds": [str(tmp_path)]})
    names = {s["name"]: s for s in skills["data"][0]["skills"]}
    assert names["agent-relay:agent-relay"]["enabled"] is True
    [hook] = [h for h in hooks["data"][0]["hooks"]
              if h.get("pluginId") == "agent-relay@agent-relay"]
    assert hook["eventName"] == "sessionStart" and "relayctl codex --hook SessionStart" in (
        hook["command"])


def test_the_stop_hook_as_codex_runs_it_prints_nothing_and_succeeds() -> None:
    proc = subprocess.run([sys.executable, "-m", "relayctl.main", "codex", "--hook", "Stop"],
                          input="{}", capture_output=True, text=True, timeout=20)
    assert (proc.returncode, proc.stdout) == (0, "")
