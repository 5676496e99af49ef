"""The service templates shipped in packaging/: each renders to a file its manager accepts."""

from __future__ import annotations

import os
import plistlib
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from relayctl.service import launchd, systemd, windows
from relayctl.service.manager import template_text

TASK_NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}
RELAYD = str(Path(sys.executable).absolute().parent / "relayd")


def test_templates_load_as_package_resources() -> None:
    assert "${exec_start}" in template_text(systemd.TEMPLATE)
    assert "@PROGRAM_ARGUMENTS@" in template_text(launchd.TEMPLATE)
    assert "${command}" in template_text(windows.TEMPLATE)


def test_systemd_quote_escapes_specifiers_variables_and_spaces() -> None:
    assert systemd.systemd_quote("/usr/bin/relayd") == "/usr/bin/relayd"
    assert systemd.systemd_quote("/a b/c%h$X") == '"/a b/c%%h$$X"'
    assert systemd.systemd_quote('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert systemd.systemd_quote("") == '""'


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed (apt-get install systemd)")
def test_rendered_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    unit = tmp_path / "agent-relay.service"
    unit.write_text(systemd.render_unit(
        [RELAYD, "--config", str(tmp_path / "my config%.toml")],
        {"AGENT_RELAY_LOG_LEVEL": "debug"},
    ))
    text = unit.read_text()
    for line in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30", "Restart=on-failure",
                 "RuntimeDirectory=agent-relay", "UMask=0077", "TimeoutStopSec=15",
                 "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID",
                 f'ExecStart={RELAYD} --config "{tmp_path}/my config%%.toml"',
                 "Environment=AGENT_RELAY_LOG_LEVEL=debug", "WantedBy=default.target"):
        assert f"\n{line}\n" in text, line
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(runtime),
           "SYSTEMD_LOG_LEVEL": "notice"}
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    # verify only warns (exit 0) about unknown keys or bad values: those must not appear.
    assert "agent-relay.service" not in result.stderr, result.stderr


def test_systemd_analyze_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """Guards the test above: verify does notice problems in a unit like ours."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    unit = tmp_path / "agent-relay.service"
    unit.write_text(systemd.render_unit([str(tmp_path / "missing-relayd")], {}))
    env = {**os.environ, "HOME": str(tmp_path), "XDG_RUNTIME_DIR": str(tmp_path)}
    result = subprocess.run(["systemd-analyze", "--user", "verify", str(unit)], env=env,
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0 and "missing-relayd" in result.stderr


def test_plist_round_trips_with_the_keys_launchd_requires() -> None:
    text = launchd.render_plist([RELAYD, "--config", "/x/a&b<c>.toml"], {"LANG": "C.UTF-8"})
    data = plistlib.loads(text.encode("utf-8"))
    assert data["Label"] == "dev.agentrelay.relayd"
    assert data["ProgramArguments"] == [RELAYD, "--config", "/x/a&b<c>.toml"]
    assert data["RunAtLoad"] is True
    assert data["KeepAlive"] == {"SuccessfulExit": False}
    assert data["EnvironmentVariables"] == {"LANG": "C.UTF-8"}
    assert data["StandardOutPath"].endswith("relayd.out.log")
    assert data["StandardErrorPath"].endswith("relayd.err.log")
    assert data["Umask"] == 0o077
    assert "@" not in text  # every placeholder was filled
    assert plistlib.loads(plistlib.dumps(data)) == data


def test_plist_fill_rejects_an_unknown_placeholder() -> None:
    with pytest.raises(KeyError, match="@NOPE@"):
        launchd.fill({"a": ["@NOPE@", "x"]}, {})


def test_windows_task_xml_parses_and_has_the_required_elements(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("USERNAME", "ada & co")
    monkeypatch.setenv("USERDOMAIN", "BOX")
    text = windows.render_task_xml([r"C:\Program Files\relay\relayd.exe", "--config",
                                    r"C:\Users\ada\my config.toml"])
    root = ET.fromstring(text.encode(windows.TASK_XML_ENCODING))
    assert root.tag == "{http://schemas.microsoft.com/windows/2004/02/mit/task}Task"

    def find(path: str) -> ET.Element:
        element = root.find(path, TASK_NS)
        assert element is not None, path
        return element

    find("t:RegistrationInfo")
    assert find("t:Triggers/t:LogonTrigger/t:UserId").text == "BOX\\ada & co"
    assert find("t:Principals/t:Principal/t:LogonType").text == "InteractiveToken"
    assert find("t:Principals/t:Principal/t:RunLevel").text == "LeastPrivilege"
    assert find("t:Settings/t:ExecutionTimeLimit").text == "PT0S"
    assert find("t:Settings/t:MultipleInstancesPolicy").text == "IgnoreNew"
    assert find("t:Actions/t:Exec/t:Command").text == r"C:\Program Files\relay\relayd.exe"
    assert find("t:Actions/t:Exec/t:Arguments").text == r'--config "C:\Users\ada\my config.toml"'
