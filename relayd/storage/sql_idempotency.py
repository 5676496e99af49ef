"""Idempotency-Key records: a repeated key from the same sender, within 24 hours, names the
write it repeats (a message, pair or task), so the retry answers with that instead."""

from __future__ import annotations

from relayd.storage.sqlite_tx import Tx

WINDOW_MS = 24 * 3600 * 1000


def find(tx: Tx, scope: str, sender: str, key: str) -> int | None:
    """The id the key was recorded for within the window, or None."""
    ref = tx.scalar(
        "SELECT ref_id FROM idempotency_keys WHERE scope = ? AND sender = ? AND key = ?"
        " AND created_at > ?",
        (scope, sender, key, tx.now - WINDOW_MS),
    )
    return None if ref is None else int(ref)


def remember(tx: Tx, scope: str, sender: str, key: str, ref_id: int) -> None:
    tx.run(
        "INSERT OR REPLACE INTO idempotency_keys (scope, sender, key, ref_id, created_at)"
        " VALUES (?, ?, ?, ?, ?)",
        (scope, sender, key, ref_id, tx.now),
    )


def prune(tx: Tx) -> int:
    """Retention: forget keys older than the window."""
    return tx.run(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (tx.now - WINDOW_MS,)
    ).rowcount
