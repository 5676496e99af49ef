"""Tx.insert_rows: every row, in order, in statements under SQLite's variable limit."""

from __future__ import annotations

import sqlite3

from relayd.storage.sqlite_tx import Tx


def test_insert_rows_writes_every_row_in_order_whatever_the_count() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE t (n INTEGER, label TEXT)")
    tx = Tx(db)
    expected: list[tuple[int, str]] = []
    for count in (*range(0, 70), 1000):  # powers of two and everything between
        rows = [(len(expected) + i, f"row {count}/{i}") for i in range(count)]
        tx.insert_rows("INSERT INTO t (n, label)", rows)
        expected.extend(rows)
    assert db.execute("SELECT n, label FROM t ORDER BY rowid").fetchall() == expected


def test_insert_rows_stays_under_the_variable_limit() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    columns = ", ".join(f"c{i}" for i in range(2000))  # 16 rows a statement at most
    db.execute(f"CREATE TABLE wide ({columns})")
    rows = [tuple(range(r, r + 2000)) for r in range(37)]
    Tx(db).insert_rows(f"INSERT INTO wide ({columns})", rows)
    assert db.execute("SELECT c0, c1999 FROM wide ORDER BY rowid").fetchall() == [
        (r, r + 1999) for r in range(37)
    ]
