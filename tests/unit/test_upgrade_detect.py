"""How `relayctl upgrade` recognises the way agent-relay was installed.

pipx and uv are not on this machine, so their environments are laid out in tmp_path the way
those tools leave them (marker files), with a stand-in executable on PATH. The real venv path
is covered end to end by tests/e2e/test_upgrade.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from relayctl.commands import upgrade


def options(**overrides: object) -> argparse.Namespace:
    values: dict[str, object] = {"find_links": None, "index_url": None, "no_index": False}
    values.update(overrides)
    return argparse.Namespace(**values)


@pytest.fixture
def env_at(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Pretend this interpreter lives in tmp_path/env, installed from a wheel."""
    prefix = tmp_path / "env"
    (prefix / "bin").mkdir(parents=True)
    tools = tmp_path / "tools"
    tools.mkdir()
    for tool in ("pipx", "uv"):
        (tools / tool).write_text("#!/bin/sh\n")
        (tools / tool).chmod(0o755)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(sys, "prefix", str(prefix))
    monkeypatch.setattr(sys, "executable", str(prefix / "bin" / "python"))
    monkeypatch.setattr(upgrade, "source_checkout", lambda: None)
    return prefix


def test_pipx_venv_upgrades_with_pipx_and_passes_index_options(env_at: Path) -> None:
    (env_at / "pipx_metadata.json").write_text("{}")
    method = upgrade.detect_install(options(find_links="/w", no_index=True))
    assert method.kind == "pipx"
    assert method.command is not None
    assert method.command[1:] == ("upgrade", "agent-relay", "--pip-args",
                                  "--find-links /w --no-index")
    assert Path(method.command[0]).name == "pipx"


def test_uv_tool_upgrades_with_uv(env_at: Path) -> None:
    (env_at / "uv-receipt.toml").write_text("[tool]\n")
    method = upgrade.detect_install(options(index_url="http://127.0.0.1:1/simple"))
    assert method.kind == "uv-tool" and method.command is not None
    assert method.command[1:] == ("tool", "upgrade", "agent-relay",
                                  "--index-url", "http://127.0.0.1:1/simple")


def test_missing_tool_and_system_python_give_instructions(
    env_at: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (env_at / "uv-receipt.toml").write_text("[tool]\n")
    monkeypatch.setenv("PATH", "")
    method = upgrade.detect_install(options())
    assert method.command is None and "`uv` is not on PATH" in method.reason
    (env_at / "uv-receipt.toml").unlink()
    monkeypatch.setattr(sys, "base_prefix", str(env_at))
    method = upgrade.detect_install(options())
    assert method.kind == "unknown" and method.command is None
    assert "pipx upgrade agent-relay" in method.reason


def test_plain_venv_upgrades_with_its_own_pip(env_at: Path) -> None:
    method = upgrade.detect_install(options(find_links="rel/dir"))
    assert method.kind == "venv"
    assert method.command == (str(env_at / "bin" / "python"), "-m", "pip", "install",
                              "--upgrade", "agent-relay", "--find-links",
                              str(Path("rel/dir").absolute()))


def test_a_source_checkout_is_never_upgraded_from_an_index() -> None:
    # This test suite itself runs from a checkout (an editable install).
    method = upgrade.detect_install(options())
    assert method.kind == "editable" and method.command is None
    assert "git pull" in method.reason
