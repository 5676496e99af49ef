"""The SQLite writer's failure paths, against a real database file: a batch whose transaction
breaks answers every write in it with 503 and stores none of it; a set-based (bulk) write that
fails falls back to one write at a time, says so in the log, and still answers each write;
and plain concurrent sends really take the set-based path, so a broken fast path cannot hide
behind the fallback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from relayd.errors import ApiError
from relayd.storage.base import MessageDraft
from relayd.storage.sql_store import BulkOp
from relayd.storage.sqlite import SQLiteStore
from relayd.storage.sqlite_tx import Tx

FALLBACK = "set-based write failed"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "relay.db")
    await opened.open(lambda events: None)
    await opened.register_agent({"id": "sink"})
    yield opened
    await opened.close()


def _draft(n: int) -> MessageDraft:
    return MessageDraft(sender="bench", to="sink", body=f"message {n}")


async def _stored_bodies(store: SQLiteStore) -> list[str]:
    rows = await store.run_read(lambda tx: tx.all("SELECT body FROM messages ORDER BY id"))
    return [row[0] for row in rows]


async def test_a_batch_whose_transaction_breaks_answers_503_and_stores_nothing(
    store: SQLiteStore,
) -> None:
    def breaks_the_transaction(tx: Tx) -> None:
        tx.run("ROLLBACK")  # the batch's savepoints and its COMMIT then fail

    commits = store.commits
    results = await asyncio.gather(
        *[store.send_message(_draft(n)) for n in range(5)],
        store.run_write(breaks_the_transaction),
        *[store.send_message(_draft(n)) for n in range(5, 10)],
        return_exceptions=True,
    )
    assert all(isinstance(r, ApiError) and r.status == 503 for r in results), results
    assert store.commits == commits and await _stored_bodies(store) == []
    await store.send_message(_draft(10))  # the writer goes on with the next batch
    assert await _stored_bodies(store) == ["message 10"]


async def test_a_failing_bulk_write_falls_back_one_by_one_and_says_so(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    def many(tx: Tx, items: list[int]) -> list[Any]:
        raise RuntimeError("bulk path broken")

    def single(item: int) -> Any:
        return lambda tx: item * 10

    with caplog.at_level(logging.WARNING, logger="relayd.storage"):
        results = await asyncio.gather(
            *[store.run_write(BulkOp(many, n, single(n))) for n in range(6)]
        )
    assert results == [0, 10, 20, 30, 40, 50]
    assert [r for r in caplog.records if FALLBACK in r.getMessage()], caplog.text


async def test_concurrent_plain_sends_take_the_set_based_path(
    store: SQLiteStore, caplog: pytest.LogCaptureFixture,
) -> None:
    commits = store.commits
    with caplog.at_level(logging.WARNING, logger="relayd.storage"):
        results = await asyncio.gather(*[store.send_message(_draft(n)) for n in range(100)])
    assert store.commits - commits < 10  # grouped
    assert not [r for r in caplog.records if FALLBACK in r.getMessage()], caplog.text
    assert [r.recipients for r in results] == [["sink"]] * 100
    assert await _stored_bodies(store) == [f"message {n}" for n in range(100)]
