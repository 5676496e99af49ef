"""The daemon's process-level defences, as functions."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
from pathlib import Path

import pytest

from relayd.config.settings import Settings
from relayd.daemon.process_limits import (
    AcceptErrorLog,
    descriptor_table_full,
    unauthenticated_bind_warning,
)


def settings(**values: object) -> Settings:
    return Settings(db_path=Path("/nonexistent/x.db"), **values)  # type: ignore[arg-type]


def test_a_non_loopback_relay_without_a_token_is_warned_about() -> None:
    warning = unauthenticated_bind_warning(settings(host="0.0.0.0", allow_unauth=True))
    assert warning is not None and "WITHOUT A TOKEN" in warning and "AGENT_RELAY_TOKEN" in warning
    assert unauthenticated_bind_warning(settings(host="127.0.0.1", allow_unauth=True)) is None
    assert unauthenticated_bind_warning(settings(host="0.0.0.0", token="t")) is None


def test_accept_errors_are_one_line_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    handler = AcceptErrorLog(interval=60)
    loop = asyncio.new_event_loop()
    try:
        with caplog.at_level(logging.ERROR, logger="relayd"):
            for _ in range(1000):
                handler(loop, {"message": "socket.accept() out of system resource",
                               "exception": OSError(24, "Too many open files")})
    finally:
        loop.close()
    records = [r for r in caplog.records if "cannot accept" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None
    assert handler.suppressed == 999


@pytest.mark.skipif(sys.platform == "win32", reason="no RLIMIT_NOFILE")
def test_the_probe_sees_a_full_descriptor_table() -> None:
    import resource

    assert descriptor_table_full() is None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no descriptor left
    try:
        full = descriptor_table_full()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert full is not None and full.errno == errno.EMFILE
    assert descriptor_table_full() is None
