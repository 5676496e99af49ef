"""Idempotency-Key records: a repeated key from the same sender, within 24 hours, names the
write it repeats (a message, pair or task), so the retry answers with that instead."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from relayd.errors import ApiError
from relayd.storage.sqlite_tx import Tx

WINDOW_MS = 24 * 3600 * 1000


def fingerprint(*parts: Any) -> str:
    """What a keyed request asked for, as a short stable hash (key order and JSON spacing do
    not matter; any field that changes the outcome does)."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def find(tx: Tx, scope: str, sender: str, key: str, print_: str | None = None) -> int | None:
    """The id the key was recorded for within the window, or None. The same key with another
    fingerprint is 422 idempotency_mismatch: a retry must repeat its request exactly."""
    row = tx.one(
        "SELECT ref_id, fingerprint FROM idempotency_keys WHERE scope = ? AND sender = ?"
        " AND key = ? AND created_at > ?",
        (scope, sender, key, tx.now - WINDOW_MS),
    )
    if row is None:
        return None
    if print_ is not None and row["fingerprint"] is not None and row["fingerprint"] != print_:
        raise mismatch(key)
    return int(row["ref_id"])


def mismatch(key: str) -> ApiError:
    return ApiError(
        422,
        "idempotency_mismatch",
        f"Idempotency-Key '{key[:128]}' was already used with a different request body;"
        " repeat the original request exactly, or use a new key for a new request",
    )


def remember(
    tx: Tx, scope: str, sender: str, key: str, ref_id: int, print_: str | None = None
) -> None:
    tx.run(
        "INSERT INTO idempotency_keys (scope, sender, key, ref_id, created_at, fingerprint)"
        " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (scope, sender, key) DO UPDATE"
        " SET ref_id = excluded.ref_id, created_at = excluded.created_at,"
        " fingerprint = excluded.fingerprint",
        (scope, sender, key, ref_id, tx.now, print_),
    )


def prune(tx: Tx) -> int:
    """Retention: forget keys older than the window."""
    return tx.run(
        "DELETE FROM idempotency_keys WHERE created_at < ?", (tx.now - WINDOW_MS,)
    ).rowcount
