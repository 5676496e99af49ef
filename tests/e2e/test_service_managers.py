"""`relayctl daemon …` against fake systemctl/journalctl/launchctl/schtasks on PATH.

relayctl runs as a real subprocess; the fakes record every call, so the tests pin down the
exact command lines each backend runs. HOME and the XDG directories point into tmp_path.
"""

from __future__ import annotations

import json
import os
import plistlib
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

FAKE_TOOL = Path(__file__).with_name("fake_service_tool.py")
TOOLS = ("systemctl", "journalctl", "launchctl", "schtasks")
UNIT = "agent-relay.service"
LABEL = "dev.agentrelay.relayd"
SHOW = "--property=LoadState,ActiveState,SubState,UnitFileState,MainPID"
TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


class Box:
    """A sandboxed user: fake tools first on PATH, a private HOME, a call log."""

    def __init__(self, tmp: Path, backend: str) -> None:
        self.tmp = tmp
        self.home = tmp / "home"
        self.bin = tmp / "fakebin"
        self.log = tmp / "calls.jsonl"
        self.bin.mkdir()
        self.home.mkdir()
        source = FAKE_TOOL.read_text()
        for tool in TOOLS:
            path = self.bin / tool
            path.write_text(f"#!{sys.executable}\n{source}")
            path.chmod(0o755)
        self.relayd = tmp / "opt" / "relayd"
        self.relayd.parent.mkdir()
        self.relayd.write_text("#!/bin/sh\nexit 0\n")
        self.relayd.chmod(stat.S_IRWXU)
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RELAY_")}
        self.env = {
            **env,
            "PATH": f"{self.bin}{os.pathsep}{env.get('PATH', '')}",
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_DATA_HOME": str(self.home / ".local" / "share"),
            "XDG_STATE_HOME": str(self.home / ".local" / "state"),
            "USERNAME": "tester",
            "USERDOMAIN": "BOX",
            "AGENT_RELAY_SERVICE_BACKEND": backend,
            "FAKE_SERVICE_LOG": str(self.log),
            "FAKE_SERVICE_STATE": str(tmp / "state.json"),
        }

    def relayctl(self, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        """Run relayctl, check its exit code, and leave the call log empty for the next one."""
        self.log.write_text("")
        result = subprocess.run(
            [sys.executable, "-m", "relayctl.main", *args],
            env=self.env, cwd=self.tmp, capture_output=True, text=True,
            stdin=subprocess.DEVNULL, timeout=60,
        )
        assert result.returncode == code, (result.stdout, result.stderr)
        return result

    def calls(self) -> list[list[str]]:
        lines = self.log.read_text().splitlines()
        return [[json.loads(line)["prog"], *json.loads(line)["argv"]] for line in lines]

    def expect(self, args: list[str], calls: list[list[str]], code: int = 0) -> str:
        result = self.relayctl(*args, code=code)
        assert self.calls() == calls, result.stdout + result.stderr
        return result.stdout


def status_json(box: Box, code: int) -> dict[str, Any]:
    status: dict[str, Any] = json.loads(box.relayctl("daemon", "status", "--json",
                                                     code=code).stdout)
    return status


# ----------------------------------------------------------------------------- systemd


def test_systemd_lifecycle_runs_the_exact_systemctl_commands(tmp_path: Path) -> None:
    box = Box(tmp_path, "systemd")
    unit = box.home / ".config" / "systemd" / "user" / UNIT
    user = ["systemctl", "--user"]
    probe = [*user, "show", "--property=Version"]  # does a user manager answer? (read-only)

    dry = box.expect(["daemon", "install", "--enable", "--start", "--dry-run",
                      "--binary", str(box.relayd)], [probe])
    assert f"ExecStart={box.relayd}" in dry
    assert "run    systemctl --user enable agent-relay.service" in dry
    assert not unit.exists()

    refused = box.relayctl("daemon", "install", "--start", code=1)
    assert "--yes" in refused.stderr and box.calls() == [probe] and not unit.exists()

    box.expect(
        ["daemon", "install", "--yes", "--enable", "--start", "--binary", str(box.relayd),
         "--config", str(tmp_path / "relay.toml")],
        [probe, [*user, "daemon-reload"], [*user, "enable", UNIT], [*user, "start", UNIT]],
    )
    text = unit.read_text()
    assert f"ExecStart={box.relayd} --config {tmp_path / 'relay.toml'}\n" in text
    assert "Type=notify\n" in text and "WatchdogSec=30\n" in text

    status = status_json(box, 0)
    assert box.calls() == [[*user, "show", UNIT, SHOW]]
    assert status | {"unitPath": None} == {
        "backend": "systemd", "installed": True, "running": True, "state": "active",
        "enabled": True, "pid": 4242, "unitPath": None, "detail": "running",
    }

    box.expect(["daemon", "stop"], [[*user, "stop", UNIT]])
    assert status_json(box, 3)["state"] == "inactive"
    box.expect(["daemon", "start"], [[*user, "start", UNIT]])
    box.expect(["daemon", "restart"], [[*user, "restart", UNIT]])
    box.expect(["daemon", "disable"], [[*user, "disable", UNIT]])
    assert status_json(box, 0)["enabled"] is False
    box.expect(["daemon", "enable"], [[*user, "enable", UNIT]])

    logs = box.expect(["daemon", "logs", "-n", "3"],
                      [["journalctl", "--user", "-u", UNIT, "-n", "3", "--no-pager"]])
    assert logs.count("journal line") == 3
    box.expect(["daemon", "logs", "-f", "-n", "1"],
               [["journalctl", "--user", "-u", UNIT, "-n", "1", "--no-pager", "-f"]])

    # Reinstalling with --start restarts, so the running relayd picks up the new unit.
    box.expect(["daemon", "install", "--yes", "--start", "--binary", str(box.relayd)],
               [probe, [*user, "daemon-reload"], [*user, "restart", UNIT]])

    box.expect(["daemon", "uninstall", "--yes"],
               [[*user, "disable", "--now", UNIT], [*user, "daemon-reload"]])
    assert not unit.exists()
    gone = box.relayctl("daemon", "start", code=1)
    assert "not installed" in gone.stderr and box.calls() == []
    assert status_json(box, 3)["installed"] is False


def test_install_defaults_to_the_relayd_of_this_install_and_prints_json_plans(
    tmp_path: Path,
) -> None:
    box = Box(tmp_path, "systemd")
    plan = json.loads(box.expect(["daemon", "install", "--dry-run", "--json", "--start"],
                                 [["systemctl", "--user", "show", "--property=Version"]]))
    assert plan["blocker"] is None
    relayd = Path(sys.executable).absolute().parent / "relayd"
    assert plan["commands"] == [
        ["systemctl", "--user", "daemon-reload"], ["systemctl", "--user", "start", UNIT],
    ]
    assert f"ExecStart={relayd}\n" in plan["writes"][0]["content"]
    assert plan["writes"][0]["path"].endswith(f".config/systemd/user/{UNIT}")


def test_bad_backend_and_bad_binary_are_one_clear_line(tmp_path: Path) -> None:
    box = Box(tmp_path, "upstart")
    result = box.relayctl("daemon", "status", code=1)
    assert "AGENT_RELAY_SERVICE_BACKEND='upstart' is not one of systemd, launchd, windows" in (
        result.stderr
    )
    box.env["AGENT_RELAY_SERVICE_BACKEND"] = "systemd"
    missing = box.relayctl("daemon", "install", "--yes", "--binary", str(tmp_path / "nope"),
                           code=1)
    assert missing.stderr.count("\n") == 1 and "is not an executable file" in missing.stderr
    assert box.calls() == []


# ----------------------------------------------------------------------------- launchd


def test_launchd_lifecycle_runs_the_exact_launchctl_commands(tmp_path: Path) -> None:
    box = Box(tmp_path, "launchd")
    plist = box.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
    domain = f"gui/{os.getuid()}"
    target = f"{domain}/{LABEL}"
    launchctl = "launchctl"

    box.expect(
        ["daemon", "install", "--yes", "--enable", "--start", "--binary", str(box.relayd)],
        [[launchctl, "print", target], [launchctl, "enable", target],
         [launchctl, "bootstrap", domain, str(plist)]],
    )
    data = plistlib.loads(plist.read_bytes())
    assert data["Label"] == LABEL and data["ProgramArguments"] == [str(box.relayd)]
    log_dir = box.home / ".local" / "state" / "agent-relay" / "log"
    assert data["StandardErrorPath"] == str(log_dir / "relayd.err.log")
    assert log_dir.is_dir()

    status = status_json(box, 0)
    assert box.calls() == [[launchctl, "print", target], [launchctl, "print-disabled", domain]]
    assert (status["running"], status["pid"], status["enabled"]) == (True, 4242, True)

    box.expect(["daemon", "restart"],
               [[launchctl, "print", target], [launchctl, "kickstart", "-k", target]])
    box.expect(["daemon", "stop"], [[launchctl, "bootout", target]])
    assert status_json(box, 3)["state"] == "not-loaded"
    box.expect(["daemon", "start"],
               [[launchctl, "print", target], [launchctl, "bootstrap", domain, str(plist)]])
    box.expect(["daemon", "start"],
               [[launchctl, "print", target], [launchctl, "kickstart", target]])
    box.expect(["daemon", "disable"], [[launchctl, "disable", target]])
    assert status_json(box, 0)["enabled"] is False
    box.expect(["daemon", "enable"], [[launchctl, "enable", target]])

    (log_dir / "relayd.err.log").write_text("one\ntwo\nthree\n")
    assert box.expect(["daemon", "logs", "-n", "2"], []) == "two\nthree\n"

    box.expect(["daemon", "uninstall", "--yes"], [[launchctl, "bootout", target]])
    assert not plist.exists()


# ----------------------------------------------------------------------------- windows


def test_windows_lifecycle_runs_the_exact_schtasks_commands(tmp_path: Path) -> None:
    box = Box(tmp_path, "windows")
    xml_path = box.home / ".local" / "share" / "agent-relay" / "agent-relay-task.xml"
    task = ["/TN", "AgentRelay"]

    box.expect(
        ["daemon", "install", "--yes", "--enable", "--start", "--binary", str(box.relayd)],
        [["schtasks", "/Create", "/XML", str(xml_path), *task, "/F"],
         ["schtasks", "/Change", *task, "/ENABLE"], ["schtasks", "/Run", *task]],
    )
    root = ET.fromstring(xml_path.read_bytes())  # UTF-16 with a BOM, as schtasks wants
    assert root.findtext("t:Actions/t:Exec/t:Command", namespaces=TASK_NS) == str(box.relayd)
    assert root.findtext("t:Triggers/t:LogonTrigger/t:UserId", namespaces=TASK_NS) == (
        "BOX\\tester"
    )

    status = status_json(box, 0)
    assert box.calls() == [["schtasks", "/Query", *task, "/FO", "LIST", "/V"]]
    assert (status["state"], status["enabled"]) == ("Running", True)

    box.expect(["daemon", "stop"], [["schtasks", "/End", *task]])
    assert status_json(box, 3)["state"] == "Ready"
    box.expect(["daemon", "start"], [["schtasks", "/Run", *task]])
    box.expect(["daemon", "restart"], [["schtasks", "/End", *task], ["schtasks", "/Run", *task]])
    box.expect(["daemon", "disable"], [["schtasks", "/Change", *task, "/DISABLE"]])
    assert status_json(box, 0)["enabled"] is False
    box.expect(["daemon", "enable"], [["schtasks", "/Change", *task, "/ENABLE"]])

    log_file = box.home / ".local" / "state" / "agent-relay" / "log" / "relayd.log"
    missing = box.relayctl("daemon", "logs", code=1)
    assert f"no log file yet at {log_file}" in missing.stderr
    log_file.parent.mkdir(parents=True)
    log_file.write_text("a\nb\n")
    assert box.expect(["daemon", "logs", "-n", "1"], []) == "b\n"

    box.expect(["daemon", "uninstall", "--yes"],
               [["schtasks", "/End", *task], ["schtasks", "/Delete", *task, "/F"]])
    assert not xml_path.exists()
    assert status_json(box, 3)["installed"] is False


@pytest.mark.parametrize("backend", ["systemd", "launchd", "windows"])
def test_failing_manager_command_is_one_line_and_exit_1(tmp_path: Path, backend: str) -> None:
    box = Box(tmp_path, backend)
    box.relayctl("daemon", "install", "--yes", "--binary", str(box.relayd))
    box.env["FAKE_SERVICE_FAIL"] = "Failed to connect to bus: No medium found"
    result = box.relayctl("daemon", "stop", code=1)
    assert result.stderr.startswith("relayctl: `") and result.stderr.count("\n") == 1
    assert result.stderr.rstrip().endswith("failed: Failed to connect to bus: No medium found")
    if backend == "systemd":
        status = status_json(box, 3)
        assert status["state"] == "unknown" and "No medium found" in status["detail"]
