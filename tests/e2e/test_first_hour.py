"""The first hour of a new user, with the real commands: the README's quick tour as written,
`relayctl daemon install` where no user service manager answers, the upgrade plan of a venv
installed from a checkout, and the one identity rule of send / inbox / whoami."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.e2e.test_service_managers import Box
from tests.e2e.test_upgrade import _current_version, copy_source
from tests.helpers import RelaydProcess, cli_env, one_line, relayctl

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
NO_BUS = "Failed to connect to bus: No medium found"


def quick_tour() -> list[str]:
    text = README.read_text()
    section = text.split("## Quick tour", 1)[1].split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def test_readme_says_how_relayd_and_relayctl_get_on_path() -> None:
    text = README.read_text()
    install = text.split("## Quick tour", 1)[0]
    assert ". .venv/bin/activate" in install
    assert "pipx install" in install and "uv tool install" in install


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_the_quick_tour_works_as_written_after_setup(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    setup = relayctl(env, "setup", "--yes")
    assert setup.returncode == 0, setup.stderr
    config = Path(env["AGENT_RELAY_CONFIG"])
    relay = RelaydProcess(tmp_path, {**env, "PORT": "0", "DB_PATH": str(tmp_path / "r.db"),
                                     "AGENT_RELAY_CONFIG": str(config)}).start()
    try:
        assert relay.url is not None
        lines = quick_tour()
        assert lines[0].startswith("relayctl setup --yes")
        assert any("relayctl token show" in line for line in lines)
        assert any("Authorization: Bearer $TOKEN" in line for line in lines)
        script = []
        for line in lines:
            if line.startswith(("relayd", "relayctl setup")):
                continue  # the test runs relayd itself, on a free port
            line = re.sub(r"\s{2,}#.*$", "", line)  # the tour's trailing comments
            line = line.replace("localhost:4850", relay.url.removeprefix("http://"))
            line = line.replace("relayctl ", f"{shlex.quote(str(Path(sys.executable).parent))}"
                                "/relayctl ")
            if "curl -sN" in line:
                line = line.replace("curl -sN", "curl -sN --max-time 1") + " || true"
            script.append(line + "; echo")
        result = subprocess.run(["bash", "-euc", "\n".join(script)], env=env,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        answers = [json.loads(line) for line in result.stdout.splitlines()
                   if line.startswith("{")]
        assert answers and not [a for a in answers if "error" in a], result.stdout
        assert any(a.get("id") == "alice" for a in answers)
        assert any(m.get("from") == "alice" for a in answers for m in a.get("messages", []))

        # without the header: the 401 says where the token is
        bare = subprocess.run(["curl", "-s", relay.api + "/agents"], capture_output=True,
                              text=True, timeout=10)
        error = json.loads(bare.stdout)
        assert error["code"] == "unauthorized"
        assert "relayctl token show" in error["error"]
    finally:
        relay.stop()


def test_daemon_install_without_a_user_manager_stops_before_writing(tmp_path: Path) -> None:
    box = Box(tmp_path, "systemd")
    box.env["FAKE_SERVICE_FAIL"] = NO_BUS
    unit = box.home / ".config" / "systemd" / "user" / "agent-relay.service"

    refused = box.relayctl("daemon", "install", "--enable", "--start", "--yes",
                           "--binary", str(box.relayd), code=1)
    line = one_line(refused.stderr)
    assert "no systemd user manager answers" in line
    assert "loginctl enable-linger" in line and "`relayd`" in line
    assert not unit.exists() and not unit.parent.exists()
    assert all(call[2] == "show" for call in box.calls())  # only the read-only probe ran

    dry = box.relayctl("daemon", "install", "--enable", "--start", "--dry-run",
                       "--binary", str(box.relayd))
    assert "Plan: install" in dry.stdout
    assert "loginctl enable-linger" in one_line(dry.stderr)
    assert not unit.exists()

    env = {**box.env, "AGENT_RELAY_SOCKET": str(tmp_path / "run" / "relayd.sock"),
           "AGENT_RELAY_CONFIG": str(tmp_path / "none.toml")}
    status = subprocess.run([sys.executable, "-m", "relayctl.main", "status"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 3
    said = one_line(status.stdout)
    assert "daemon start" not in said
    assert "`relayd`" in said and "loginctl enable-linger" in said


def test_status_still_suggests_the_service_when_it_is_installed(tmp_path: Path) -> None:
    box = Box(tmp_path, "systemd")
    box.relayctl("daemon", "install", "--yes", "--binary", str(box.relayd))
    env = {**box.env, "AGENT_RELAY_SOCKET": str(tmp_path / "run" / "relayd.sock"),
           "AGENT_RELAY_CONFIG": str(tmp_path / "none.toml")}
    status = subprocess.run([sys.executable, "-m", "relayctl.main", "status"], env=env,
                            capture_output=True, text=True, timeout=30)
    assert status.returncode == 3
    assert "relayctl daemon start" in one_line(status.stdout)


def test_upgrade_plan_of_a_venv_installed_from_a_checkout(tmp_path: Path) -> None:
    """`pip install .` from a checkout, as the README says: the plan reinstalls from that
    checkout and says so, instead of naming an index package."""
    checkout = copy_source(tmp_path / "agent-relay", _current_version())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    # the dependencies come from this test's environment, so nothing is downloaded
    Path(purelib, "outer.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    install = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", "--no-deps",
         str(checkout)],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RELAY_")}
    plan = subprocess.run([str(venv / "bin" / "relayctl"), "upgrade", "--dry-run", "--json"],
                          env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert plan.returncode == 0, plan.stderr
    answer = json.loads(plan.stdout)
    assert answer["method"] == "checkout"
    assert answer["command"][-1] == str(checkout)
    assert "agent-relay" not in answer["command"][-2:-1]
    assert str(checkout) in answer["note"] and "git -C" in answer["note"]
    human = subprocess.run([str(venv / "bin" / "relayctl"), "upgrade", "--dry-run"],
                           env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert f"reinstall agent-relay from the checkout {checkout}" in human.stdout


def test_send_inbox_and_whoami_share_one_identity(tmp_path: Path) -> None:
    relay = RelaydProcess(tmp_path).start()
    try:
        assert relay.url is not None
        env = cli_env(tmp_path, AGENT_RELAY_URL=relay.url)
        project = tmp_path / "my-project"
        project.mkdir()

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([str(Path(sys.executable).parent / "relayctl"), *args],
                                  env=env, cwd=project, capture_output=True, text=True,
                                  timeout=30, stdin=subprocess.DEVNULL)

        me = one_line(run("whoami").stdout)
        assert re.fullmatch(r"[\w.-]+-my-project-[0-9a-f]{8}", me), me
        assert one_line(run("whoami").stdout) == me  # stable from one call to the next

        sent = run("send", "--json", "broadcast", "hello, anyone?")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["from"] == me
        agents = json.loads(run("agents", "--json").stdout)["agents"]
        assert me in [a["id"] for a in agents]  # registered, so replies reach it

        reply = run("send", "--from", "bob", me, "hi back")
        assert reply.returncode == 0, reply.stderr
        inbox = run("inbox")
        assert inbox.returncode == 0, inbox.stderr
        assert "hi back" in inbox.stdout

        explicit = {**env, "AGENT_RELAY_AGENT_ID": "reviewer-7"}
        named = subprocess.run([str(Path(sys.executable).parent / "relayctl"), "whoami",
                                "--json"], env=explicit, cwd=project, capture_output=True,
                               text=True, timeout=30)
        assert json.loads(named.stdout) == {"agentId": "reviewer-7",
                                            "source": "AGENT_RELAY_AGENT_ID"}
    finally:
        relay.stop()
