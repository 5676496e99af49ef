"""Hot queries keep their indexes: a partial index is used only when the query repeats its
condition word for word, which a harmless-looking refactor can break (it once did: ingress
fell from ~1,500 to ~1,100 new tasks/s as every dedupe check scanned the table)."""

from __future__ import annotations

from pathlib import Path

from relayd.domain.tasks import FINISHED
from relayd.storage import sql_tasks
from relayd.storage.sqlite import SQLiteStore
from relayd.storage.sqlite_tx import Tx


async def _plan(store: SQLiteStore, sql: str, params: tuple[object, ...]) -> str:
    def explain(tx: Tx) -> str:
        return " | ".join(str(row[-1]) for row in tx.all(f"EXPLAIN QUERY PLAN {sql}", params))

    return await store.run_read(explain)


async def test_the_dedupe_check_uses_the_partial_unique_index(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "relay.db")
    await store.open(lambda events: None)
    try:
        plan = await _plan(store, sql_tasks.ACTIVE_BY_DEDUPE_SQL, ("monitor", "disk-full"))
    finally:
        await store.close()
    assert "tasks_active_dedupe" in plan, plan


def test_the_finished_statuses_match_the_domain() -> None:
    listed = {part.strip(" '") for part in sql_tasks.FINISHED_SQL.strip("()").split(",")}
    assert listed == FINISHED
