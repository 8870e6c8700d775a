"""A consistent copy of a live read model, taken inside the process that holds the file.

DuckDB lets one process open a file for writing and no other process open it at all, so a
running API's read model can only be read from within the API. A snapshot copies every table
a replay must reproduce, and the checkpoint, in one read transaction: the copy is the model as
of one batch boundary, while the projector goes on writing.
"""

from __future__ import annotations

from pathlib import Path

import duckdb

from events.ids import new_id
from projections import schema


def take(cur: duckdb.DuckDBPyConnection, path: Path) -> int:
    """Copy the log tables and the checkpoint into a new DuckDB file at `path`; returns the
    checkpoint (the last sequence the copy holds)."""
    alias = f"snapshot_{new_id()}"  # attached databases are shared by every cursor: a unique name
    cur.execute(f"ATTACH '{_quoted(path)}' AS {alias}")
    try:
        cur.execute("BEGIN TRANSACTION")
        try:
            for table in [*schema.LOG_TABLES, "checkpoint"]:
                cur.execute(f"CREATE TABLE {alias}.{table} AS SELECT * FROM {table}")
            seq = schema.checkpoint(cur)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise
    finally:
        cur.execute(f"DETACH {alias}")
    return seq


def _quoted(path: Path) -> str:
    return str(path).replace("'", "''")
