"""Compare two read models table by table: a SHA-256 over each table's rows in key order, and,
where the hashes differ, the first rows found in only one of the two."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb

from projections.schema import LOG_TABLES

FETCH_ROWS = 10_000
SHOW_ROWS = 10


@dataclass(frozen=True)
class TableCheck:
    table: str
    rows: tuple[int, int]
    hashes: tuple[str, str]
    only_in_first: list[tuple[Any, ...]] = field(default_factory=list)
    only_in_second: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def equal(self) -> bool:
        return self.hashes[0] == self.hashes[1]


def table_hash(con: duckdb.DuckDBPyConnection, table: str, order: str) -> tuple[str, int]:
    """SHA-256 over the rows' reprs, one per line, ordered by the table's key; and the row count.
    repr is exact for every column type the tables hold (str, int, float, bool, None, datetime, list)."""
    digest = hashlib.sha256()
    rows = 0
    result = con.execute(f"SELECT * FROM {table} ORDER BY {order}")
    while chunk := result.fetchmany(FETCH_ROWS):
        for row in chunk:
            digest.update(repr(row).encode())
            digest.update(b"\n")
        rows += len(chunk)
    return digest.hexdigest(), rows


def hashes(path: Path | str) -> dict[str, str]:
    """Each log table's content hash in the file at `path` (opened read-only)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        return {table: table_hash(con, table, order)[0] for table, (_, order) in LOG_TABLES.items()}
    finally:
        con.close()


def compare(first: Path | str, second: Path | str, show: int = SHOW_ROWS) -> list[TableCheck]:
    """Every log table of two read-model files, both opened read-only."""
    con = duckdb.connect()
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("ATTACH ? AS a (READ_ONLY)", [str(first)])
        con.execute("ATTACH ? AS b (READ_ONLY)", [str(second)])
        out = []
        for table, (_, order) in LOG_TABLES.items():
            ha, na = table_hash(con, f"a.{table}", order)
            hb, nb = table_hash(con, f"b.{table}", order)
            only_a: list[tuple[Any, ...]] = []
            only_b: list[tuple[Any, ...]] = []
            if ha != hb:
                only_a = _except(con, f"a.{table}", f"b.{table}", order, show)
                only_b = _except(con, f"b.{table}", f"a.{table}", order, show)
            out.append(TableCheck(table, (na, nb), (ha, hb), only_a, only_b))
        return out
    finally:
        con.close()


def _except(
    con: duckdb.DuckDBPyConnection, left: str, right: str, order: str, show: int
) -> list[tuple[Any, ...]]:
    return con.execute(
        f"SELECT * FROM (SELECT * FROM {left} EXCEPT ALL SELECT * FROM {right}) ORDER BY {order} LIMIT {show}"
    ).fetchall()
