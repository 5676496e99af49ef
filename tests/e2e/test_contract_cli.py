"""Contract section 9 audit: relayctl as real subprocesses — help everywhere, usage errors
exit 2 (also for values the relay would refuse), and `upgrade --dry-run` always shows a plan."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from relayctl.main import build_parser
from relayctl.main import main as relayctl_main
from tests.helpers import RelaydProcess

TOKEN = "contract-cli-token"


def every_command(parser: argparse.ArgumentParser, path: list[str]) -> Iterator[list[str]]:
    yield path
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from every_command(sub, [*path, name])


COMMANDS = [c for c in every_command(build_parser(), []) if c]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """No relay anywhere: a usage error must be caught before anything is contacted."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RELAY_")}
    config = tmp_path / "config.toml"
    config.write_text("")
    clean.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "cfg"),
                 XDG_RUNTIME_DIR=str(tmp_path), AGENT_RELAY_CONFIG=str(config),
                 AGENT_RELAY_URL="http://127.0.0.1:9", AGENT_RELAY_TOKEN="t" * 16)
    return clean


def relayctl(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "relayctl.main", *args], env=env,
                          capture_output=True, text=True, timeout=30,
                          stdin=subprocess.DEVNULL)


def test_the_contract_commands_all_exist() -> None:
    listed = {" ".join(c) for c in COMMANDS}
    for name in ("setup", "token show", "token rotate", "status", "daemon install",
                 "daemon status", "daemon logs", "daemon start", "daemon stop",
                 "daemon restart", "daemon enable", "daemon disable", "daemon uninstall",
                 "upgrade", "provider refresh", "send", "send-claimable", "inbox", "watch",
                 "pair", "label", "tags", "agents", "tasks"):
        assert name in listed, name


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_command_and_subcommand_has_help(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert relayctl_main([*command, "--help"]) == 0
    assert "usage: relayctl " + " ".join(command) in capsys.readouterr().out


@pytest.mark.parametrize(
    "args",
    [["inbox", "--for", "a", "--limit", "1001"], ["inbox", "--for", "a", "--wait", "61"],
     ["tasks", "--limit", "5000"], ["inbox", "--for", "a", "--limit", "0"]],
    ids=" ".join,
)
def test_values_out_of_the_relays_range_are_usage_errors(
    env: dict[str, str], args: list[str]
) -> None:
    result = relayctl(env, *args)
    assert result.returncode == 2, result
    assert "must be at" in result.stderr and result.stdout == ""


def test_the_bounds_themselves_are_accepted(env: dict[str, str]) -> None:
    # Valid values get past argument parsing: the (absent) relay is what fails, exit 3.
    assert relayctl(env, "inbox", "--for", "a", "--limit", "1000", "--wait", "60").returncode == 3
    assert relayctl(env, "tasks", "--limit", "1000").returncode == 3


def test_upgrade_dry_run_prints_a_plan_and_exits_0_whatever_the_install(
    env: dict[str, str],
) -> None:
    human = relayctl(env, "upgrade", "--dry-run")
    assert human.returncode == 0, human
    assert human.stdout.startswith("Plan:")
    report = json.loads(relayctl(env, "upgrade", "--dry-run", "--json").stdout)
    assert report["method"] in ("pipx", "uv-tool", "venv", "editable", "unknown")
    assert report["command"] is not None or report["manual"]


@pytest.fixture(scope="module")
def relay(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RelaydProcess]:
    process = RelaydProcess(tmp_path_factory.mktemp("relay"), {"AGENT_RELAY_TOKEN": TOKEN})
    process.start()
    yield process
    process.stop()


@pytest.fixture
def live(env: dict[str, str], relay: RelaydProcess) -> dict[str, str]:
    assert relay.url is not None
    return {**env, "AGENT_RELAY_URL": relay.url, "AGENT_RELAY_TOKEN": TOKEN}


@pytest.mark.parametrize(
    "args",
    [["send", "ann", "", "--from", "ci"], ["send", "ann", "   ", "--from", "ci"],
     ["send", "bad target!", "hi", "--from", "ci"],
     ["tasks", "status", "1", "done", "--agent", "bad id!"],
     ["send", "tag:x", "hi", "--from", "ci", "--reply-to", "999999"],
     ["pair", "start", "", "--from", "ci"]],
    ids=" ".join,
)
def test_bad_arguments_the_relay_refuses_are_usage_errors(
    live: dict[str, str], args: list[str]
) -> None:
    result = relayctl(live, *args)
    assert result.returncode == 2, result
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1


def test_refusals_that_are_not_usage_stay_exit_1(live: dict[str, str]) -> None:
    missing = relayctl(live, "claim", "999999", "--agent", "ann")
    assert missing.returncode == 1 and "(not_found)" in missing.stderr
    unknown = relayctl(live, "send", "nobody-at-all", "hi", "--from", "ci")
    assert unknown.returncode == 1 and "(not_found)" in unknown.stderr


def http_json(
    method: str, url: str, body: dict[str, object] | None = None
) -> tuple[int, dict[str, Any]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def wait_for(check: Callable[[], bool], seconds: float = 8.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_relayd_honours_sub_second_timings_from_the_environment(
    relayd_process: Callable[..., RelaydProcess],
) -> None:
    relay = relayd_process(env={"STALE_TTL_MS": "300", "OFFLINE_PRUNE_MS": "0",
                                "REAP_INTERVAL_MS": "20",
                                "AGENT_RELAY_PENDING_PAIR_TTL_MS": "300"})
    api = f"{relay.url}/api"
    for agent in ("quiet", "keen"):
        assert http_json("POST", f"{api}/agents", {"id": agent})[0] == 201
    status, pair = http_json("POST", f"{api}/pairs", {"from": "keen", "to": "id:quiet"})
    assert status == 201, pair

    def expired() -> bool:
        return bool(http_json("GET", f"{api}/pairs/{pair['id']}")[1]["status"] == "expired")

    wait_for(expired)
    wait_for(lambda: http_json("GET", f"{api}/agents/quiet")[0] == 404)


@pytest.mark.parametrize(
    "variables",
    [{"AGENT_RELAY_URL": "http://[::1"}, {"AGENT_RELAY_TOKEN": "two\nlines"},
     {"AGENT_RELAY_TOKEN": "t\u00f8ken"}],
    ids=["unclosed-ipv6", "newline-token", "non-ascii-token"],
)
def test_broken_relay_variables_are_one_line_usage_errors(
    env: dict[str, str], variables: dict[str, str]
) -> None:
    result = relayctl({**env, **variables}, "agents")
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1


def test_pair_list_prints_in_the_order_its_help_states(live: dict[str, str]) -> None:
    api = live["AGENT_RELAY_URL"] + "/api"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}

    def post(path: str, body: dict[str, str]) -> dict[str, Any]:
        request = urllib.request.Request(api + path, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
            return answer

    for agent in ("order-a", "order-b"):
        post("/agents", {"id": agent})
    ids = []
    for _ in range(2):
        pair = post("/pairs", {"from": "order-a", "to": "id:order-b"})
        post(f"/pairs/{pair['id']}/hangup", {"agent": "order-a"})
        ids.append(pair["id"])
    assert "oldest first" in relayctl(live, "pair", "list", "--help").stdout
    listed = relayctl(live, "pair", "list", "--agent", "order-a").stdout.splitlines()
    assert [line.split()[1] for line in listed] == [str(i) for i in ids]
