"""A real `relayctl upgrade`: 0.1.0 installed from a wheel into a fresh venv, upgraded to 0.1.1
from a local wheel folder, with the service restarted and the new version seen on /api/health.

Only the service manager is fake (systemctl on PATH, which really starts and stops the venv's
relayd); the wheels, the venv, pip and relayd are real.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAKE_TOOL = Path(__file__).with_name("fake_service_tool.py")
SOURCES = ("pyproject.toml", "README.md", "relayd", "relayctl", "packaging", "providers")
TOKEN = "upgrade-test-token-0123456789"
TEMPLATES = (
    "agent_relay_packaging/systemd/agent-relay.service.in",
    "agent_relay_packaging/launchd/dev.agentrelay.relayd.plist.in",
    "agent_relay_packaging/windows/agent-relay-task.xml.in",
    # the Claude Code plugin and its marketplace (relayctl provider install claude)
    "agent_relay_providers/.claude-plugin/marketplace.json",
    "agent_relay_providers/claude/.claude-plugin/plugin.json",
    "agent_relay_providers/claude/hooks/hooks.json",
    "agent_relay_providers/claude/monitors/monitors.json",
    "agent_relay_providers/claude/scripts/relay.sh",
    "agent_relay_providers/claude/skills/message/SKILL.md",
)


def copy_source(dest: Path, version: str) -> Path:
    dest.mkdir()
    for name in SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, dest / name)
    init = dest / "relayd" / "__init__.py"
    text = init.read_text()
    assert '__version__ = "' in text
    init.write_text(text.replace(f'__version__ = "{_current_version()}"',
                                 f'__version__ = "{version}"'))
    return dest


def _current_version() -> str:
    from relayd import __version__

    return __version__


def build_wheels(tmp: Path, versions: dict[str, str]) -> dict[str, Path]:
    """Build one wheel per version, in parallel; {version: wheel folder}."""
    builds = {}
    for version, name in versions.items():
        src = copy_source(tmp / f"src-{name}", version)
        out = tmp / f"wheels-{name}"
        builds[version] = (out, subprocess.Popen(
            [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            # Not from the checkout root: its packaging/ folder would shadow PyPA's packaging.
            cwd=tmp,
        ))
    for version, (_, proc) in builds.items():
        output, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"building {version} failed:\n{output[-3000:]}"
    return {version: out for version, (out, _) in builds.items()}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def health_version(port: int) -> str | None:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/health",
                                     headers={"Authorization": f"Bearer {TOKEN}"})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=2) as response:
            return str(json.loads(response.read())["version"])
    except OSError:
        return None


def wait_for_version(port: int, version: str, seconds: float = 20) -> str | None:
    deadline = time.monotonic() + seconds
    seen = None
    while time.monotonic() < deadline:
        seen = health_version(port)
        if seen == version:
            break
        time.sleep(0.1)
    return seen


def stop_service_process(pidfile: Path) -> None:
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pidfile.read_text()), signal.SIGTERM)


@pytest.mark.timeout(240)
def test_upgrade_installs_the_new_wheel_restarts_and_sees_the_new_version(
    tmp_path: Path,
) -> None:
    old = _current_version()
    new = _bump(old)
    wheels = build_wheels(tmp_path, {old: "old", new: "new"})
    (old_wheel,) = wheels[old].glob("*.whl")
    (new_wheel,) = wheels[new].glob("*.whl")
    with zipfile.ZipFile(new_wheel) as archive:
        assert set(TEMPLATES) <= set(archive.namelist()), "templates must ship in the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    bin_dir = venv / "bin"
    # The wheel by path: its dependencies come from the configured index, never agent-relay.
    pip = subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "-q", str(old_wheel)],
                         capture_output=True, text=True, timeout=300, check=False)
    assert pip.returncode == 0, pip.stderr[-3000:]

    home, fakebin = tmp_path / "home", tmp_path / "fakebin"
    home.mkdir()
    fakebin.mkdir()
    for tool in ("systemctl", "journalctl"):
        (fakebin / tool).write_text(f"#!{sys.executable}\n{FAKE_TOOL.read_text()}")
        (fakebin / tool).chmod(0o755)
    port = free_port()
    config = tmp_path / "relay.toml"
    config.write_text(
        f'host = "127.0.0.1"\nport = {port}\ntoken = "{TOKEN}"\n'
        f'db_path = "{tmp_path / "relay.db"}"\nsocket_path = "{tmp_path / "run" / "s.sock"}"\n'
    )
    pidfile = tmp_path / "relayd.pid"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RELAY_")}
    env.update({
        "PATH": f"{fakebin}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(home), "XDG_CONFIG_HOME": str(home / ".config"),
        "AGENT_RELAY_CONFIG": str(config), "AGENT_RELAY_SERVICE_BACKEND": "systemd",
        "FAKE_SERVICE_LOG": str(tmp_path / "calls.jsonl"),
        "FAKE_SERVICE_STATE": str(tmp_path / "state.json"),
        "FAKE_SERVICE_EXEC": json.dumps([str(bin_dir / "relayd")]),
        "FAKE_SERVICE_PIDFILE": str(pidfile),
    })

    def relayctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(bin_dir / "relayctl"), *args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL,
                              timeout=180, check=False)

    try:
        installed = relayctl("daemon", "install", "--yes", "--start")
        assert installed.returncode == 0, installed.stderr
        assert wait_for_version(port, old) == old, (tmp_path / "relayd.log").read_text()

        dry = relayctl("upgrade", "--dry-run", "--find-links", str(wheels[new]), "--no-index")
        assert dry.returncode == 0, dry.stderr
        assert f"{bin_dir / 'python'} -m pip install --upgrade agent-relay" in dry.stdout
        assert health_version(port) == old

        upgraded = relayctl("upgrade", "--yes", "--find-links", str(wheels[new]), "--no-index")
        assert upgraded.returncode == 0, upgraded.stdout + upgraded.stderr
        assert f"agent-relay {old} → {new}" in upgraded.stdout
        assert f"daemon restarted (systemd), reports {new}" in upgraded.stdout
        assert "providers refreshed: claude-code, codex" in upgraded.stdout
        assert health_version(port) == new

        version = subprocess.run([str(bin_dir / "relayd"), "--version"], capture_output=True,
                                 text=True, timeout=60, check=True)
        assert version.stdout.strip() == f"relayd {new}"
        calls = [json.loads(line)["argv"] for line in
                 (tmp_path / "calls.jsonl").read_text().splitlines()]
        assert calls[-1] == ["--user", "restart", "agent-relay.service"]
    finally:
        stop_service_process(pidfile)


def _bump(version: str) -> str:
    """0.1.0 → 0.1.1; anything else gets a .post1 release, which also sorts higher."""
    major, _, patch = version.rpartition(".")
    return f"{major}.{int(patch) + 1}" if patch.isdigit() else f"{version}.post1"
