"""Reads for people watching the relay (the dashboard): who got a message and whether they read
it, and how many messages went through per minute."""

from __future__ import annotations

from relayd.storage.sqlite_tx import Tx, placeholders


def deliveries(tx: Tx, message_ids: list[int]) -> dict[int, list[tuple[str, int | None]]]:
    """Per message: (recipient, read_at or None), recipients in id order."""
    found: dict[int, list[tuple[str, int | None]]] = {m: [] for m in message_ids}
    for start in range(0, len(message_ids), 400):
        chunk = message_ids[start : start + 400]
        marks = placeholders(len(chunk))
        # deliveries rows, and the members of a selector message's audience (0006_fanout)
        rows = tx.all(
            "SELECT message_id, agent_id, read_at FROM deliveries"
            f" WHERE message_id IN ({marks})"
            " UNION"
            " SELECT m.id AS message_id, am.agent_id, d.read_at FROM messages m"
            " JOIN audience_members am ON am.audience_id = m.audience_id"
            " AND am.agent_id != m.sender"
            " LEFT JOIN deliveries d ON d.message_id = m.id AND d.agent_id = am.agent_id"
            f" WHERE m.id IN ({marks})"
            " ORDER BY message_id, agent_id",
            [*chunk, *chunk],
        )
        for row in rows:
            found[row["message_id"]].append((row["agent_id"], row["read_at"]))
    return found


def message_rate(tx: Tx, until_ms: int, bucket_ms: int, buckets: int) -> list[int]:
    """Messages created in each of the `buckets` intervals ending at `until_ms`, oldest first."""
    since = until_ms - bucket_ms * buckets
    counts = [0] * buckets
    rows = tx.all(
        "SELECT (created_at - ?) / ? AS bucket, COUNT(*) AS n FROM messages"
        " WHERE created_at >= ? AND created_at < ? GROUP BY bucket",
        (since, bucket_ms, since, until_ms),
    )
    for row in rows:
        index = int(row["bucket"])
        if 0 <= index < buckets:
            counts[index] = int(row["n"])
    return counts
