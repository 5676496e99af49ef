"""Helpers for the Codex provider tests: a CODEX_HOME outside /tmp, app-server readers,
and process-tree checks."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

CODEX = shutil.which("codex")
needs_codex = pytest.mark.skipif(
    CODEX is None, reason="the Codex CLI is not installed (npm install -g @openai/codex; "
    ".ci/run installs the pinned version)")


def codex_tmp_dir() -> Iterator[Path]:
    """A private directory outside /tmp (Codex treats /tmp specially), removed afterwards."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else None
    path = Path(tempfile.mkdtemp(prefix="relay-codex-test-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def rpc_call(ws: aiohttp.ClientWebSocketResponse, request_id: int, method: str,
                   params: dict[str, Any]) -> dict[str, Any]:
    await ws.send_json({"id": request_id, "method": method, "params": params})
    while True:
        message = await ws.receive_json(timeout=10)
        if message.get("id") == request_id and "method" not in message:
            assert "error" not in message, message
            result: dict[str, Any] = message["result"]
            return result


async def read_user_messages(url: str, thread_id: str) -> list[dict[str, Any]]:
    """The userMessage items of the thread, through a separate app-server client."""
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        await rpc_call(ws, 1, "initialize", {"clientInfo": {"name": "test", "version": "1"}})
        await ws.send_json({"id": 2, "method": "thread/read",
                            "params": {"threadId": thread_id, "includeTurns": True}})
        while (message := await ws.receive_json(timeout=10)).get("id") != 2:
            pass
    if "error" in message:  # a thread with no turn yet has no history to list
        assert "not supported" in message["error"]["message"], message
        return []
    result = message["result"]
    return [item for turn in result["thread"].get("turns") or []
            for item in turn.get("items") or [] if item.get("type") == "userMessage"]


def item_text(item: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in item.get("content") or [])


async def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {predicate}")
        await asyncio.sleep(interval)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        children: list[psutil.Process] = psutil.Process(pid).children(recursive=True)
        return children
    except psutil.NoSuchProcess:
        return []


def alive(processes: list[psutil.Process]) -> list[psutil.Process]:
    out = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                out.append(process)
        except psutil.NoSuchProcess:
            pass
    return out


FAKE_UI = r'''
import asyncio, json, os, sys
import aiohttp

async def main(url):
    async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
        await ws.send_json({"id": 1, "method": "initialize",
                            "params": {"clientInfo": {"name": "fake-ui", "version": "1"}}})
        while (await ws.receive_json()).get("id") != 1:
            pass
        await ws.send_json({"id": 2, "method": "thread/start", "params": {"ephemeral": False}})
        while True:
            m = await ws.receive_json()
            if m.get("id") == 2:
                break
        print(json.dumps({"thread": m["result"]["thread"]["id"]}), flush=True)
        stop = os.environ["FAKE_UI_STOP_FILE"]
        while not os.path.exists(stop):
            await asyncio.sleep(0.05)
        sys.exit(int(open(stop).read() or 0))

asyncio.run(main(sys.argv[sys.argv.index("--remote") + 1]))
'''


def fake_codex_bin(directory: Path, real_codex: str) -> Path:
    """A codex wrapper: the real app-server, and for the UI (`codex --remote …`) a small
    client that opens a thread like the TUI does and exits when FAKE_UI_STOP_FILE appears."""
    ui = directory / "fake_ui.py"
    ui.write_text(FAKE_UI, encoding="utf-8")
    wrapper = directory / "codex-wrapper"
    wrapper.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" = "app-server" ]; then exec {real_codex} "$@"; fi\n'
        f'exec {sys.executable} {ui} "$@"\n', encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper


def spawn(args: list[str], env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, text=True, **kwargs)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1)[:2000]


__all__ = ["os"]
