"""A stand-in for systemctl, journalctl, launchctl and schtasks, installed under those names.

It appends one JSON line per call ({"prog", "argv"}) to $FAKE_SERVICE_LOG and answers the way
the real tool does for the calls relayctl makes, keeping the service's state (loaded, active,
enabled) in $FAKE_SERVICE_STATE between calls. With $FAKE_SERVICE_FAIL set, every call prints
that message on stderr and exits 1, like a manager that cannot be reached. With
$FAKE_SERVICE_EXEC (a JSON argv) set, systemctl start/restart/stop really run that program in
the background, recording its pid in $FAKE_SERVICE_PIDFILE, so a test can restart a relayd.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

PID = 4242
LABEL = "dev.agentrelay.relayd"


def load_state() -> dict[str, bool]:
    path = Path(os.environ["FAKE_SERVICE_STATE"])
    if path.exists():
        return dict(json.loads(path.read_text()))
    return {"loaded": False, "active": False, "enabled": False}


def save_state(state: dict[str, bool]) -> None:
    Path(os.environ["FAKE_SERVICE_STATE"]).write_text(json.dumps(state))


def stop_program() -> None:
    pidfile = Path(os.environ["FAKE_SERVICE_PIDFILE"])
    if not pidfile.exists():
        return
    pid = int(pidfile.read_text())
    pidfile.unlink()
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and is_alive(pid):
        time.sleep(0.05)


def is_alive(pid: int) -> bool:
    """Running and not a zombie (an orphan is reaped by whoever PID 1 is, maybe never)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_program() -> None:
    log = open(Path(os.environ["FAKE_SERVICE_PIDFILE"]).with_suffix(".log"), "ab")  # noqa: SIM115
    proc = subprocess.Popen(
        json.loads(os.environ["FAKE_SERVICE_EXEC"]), stdin=subprocess.DEVNULL,
        stdout=log, stderr=log, start_new_session=True,
    )
    Path(os.environ["FAKE_SERVICE_PIDFILE"]).write_text(str(proc.pid))


def systemctl(args: list[str], state: dict[str, bool]) -> int:
    assert args[0] == "--user", "relayctl must only talk to the user manager"
    verb, rest = args[1], args[2:]
    if verb in ("is-active", "show"):
        return systemctl_query(verb, state)
    if verb in ("start", "restart", "stop"):
        systemctl_run(verb, state)
    elif verb == "enable":
        state["enabled"] = True
    elif verb == "disable":
        state["enabled"] = False
        if "--now" in rest:
            state["active"] = False
    elif verb != "daemon-reload":
        print(f"Unknown command verb {verb}.", file=sys.stderr)
        return 1
    return 0


def systemctl_run(verb: str, state: dict[str, bool]) -> None:
    if "FAKE_SERVICE_EXEC" in os.environ:
        stop_program()
        if verb != "stop":
            start_program()
    state["active"] = verb != "stop"


def systemctl_query(verb: str, state: dict[str, bool]) -> int:
    if verb == "is-active":
        print("active" if state["active"] else "inactive")
        return 0 if state["active"] else 3
    print("LoadState=loaded")
    print(f"ActiveState={'active' if state['active'] else 'inactive'}")
    print(f"SubState={'running' if state['active'] else 'dead'}")
    print(f"UnitFileState={'enabled' if state['enabled'] else 'disabled'}")
    print(f"MainPID={PID if state['active'] else 0}")
    return 0


def journalctl(args: list[str], state: dict[str, bool]) -> int:
    count = int(args[args.index("-n") + 1])
    for i in range(count):
        print(f"Nov 25 18:00:0{i % 10} box relayd[{PID}]: journal line {i}")
    return 0


def launchctl(args: list[str], state: dict[str, bool]) -> int:
    verb, rest = args[0], args[1:]
    if verb == "print":
        if not state["loaded"]:
            print(f"Could not find service \"{LABEL}\" in domain for port", file=sys.stderr)
            return 113
        print(f"{rest[0]} = {{\n\tactive count = 1\n\tpath = /x.plist")
        print(f"\tstate = {'running' if state['active'] else 'not running'}")
        if state["active"]:
            print(f"\tpid = {PID}")
        print("\tendpoints = {\n\t\tstate = active\n\t}\n}")
    elif verb == "print-disabled":
        print(f"disabled services = {{\n\t\"{LABEL}\" => "
              f"{'enabled' if state['enabled'] else 'disabled'}\n}}")
    elif verb == "bootstrap":
        state["loaded"] = state["active"] = True
    elif verb == "bootout":
        if not state["loaded"]:
            print("Boot-out failed: 3: No such process", file=sys.stderr)
            return 3
        state["loaded"] = state["active"] = False
    elif verb == "kickstart":
        state["active"] = True
    elif verb in ("enable", "disable"):
        state["enabled"] = verb == "enable"
    else:
        print(f"Unrecognized subcommand: {verb}", file=sys.stderr)
        return 1
    return 0


def schtasks(args: list[str], state: dict[str, bool]) -> int:
    verb = args[0]
    if verb == "/Create":
        state["loaded"] = state["enabled"] = True
    elif not state["loaded"]:
        print("ERROR: The system cannot find the file specified.", file=sys.stderr)
        return 1
    elif verb == "/Run":
        state["active"] = True
    elif verb == "/End":
        state["active"] = False
    elif verb == "/Change":
        state["enabled"] = "/ENABLE" in args
    elif verb == "/Delete":
        state["loaded"] = state["active"] = False
    elif verb == "/Query":
        print("\nFolder: \\\nHostName:                             BOX")
        print("TaskName:                             \\AgentRelay")
        print(f"Status:                               {'Running' if state['active'] else 'Ready'}")
        print("Scheduled Task State:                 "
              + ("Enabled" if state["enabled"] else "Disabled"))
    else:
        print(f"ERROR: Invalid argument/option - '{verb}'.", file=sys.stderr)
        return 1
    if verb in ("/Create", "/Run", "/End", "/Change", "/Delete"):
        print("SUCCESS: done.")
    return 0


TOOLS = {
    "systemctl": systemctl,
    "journalctl": journalctl,
    "launchctl": launchctl,
    "schtasks": schtasks,
}


def main() -> int:
    prog = Path(sys.argv[0]).name
    args = sys.argv[1:]
    with open(os.environ["FAKE_SERVICE_LOG"], "a") as log:
        log.write(json.dumps({"prog": prog, "argv": args}) + "\n")
    if os.environ.get("FAKE_SERVICE_FAIL"):
        print(os.environ["FAKE_SERVICE_FAIL"], file=sys.stderr)
        return 1
    state = load_state()
    code = TOOLS[prog](args, state)
    save_state(state)
    return code


if __name__ == "__main__":
    sys.exit(main())
