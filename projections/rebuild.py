"""Replay the whole log into a fresh read model, and dump tables to compare two of them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS

from events.streams import EVENTS_STREAM
from projections.projector import Projector
from projections.schema import LOG_TABLES

REBUILD_TIMEOUT_S = 3600.0


async def rebuild(db_path: Path, nc: NATS, timeout: float = REBUILD_TIMEOUT_S) -> int:
    """Build `db_path` from sequence 1 beside the old file, then swap it in; returns the sequence reached."""
    tmp = db_path.with_name(db_path.name + ".rebuild")
    for stale in (tmp, tmp.with_name(tmp.name + ".wal")):
        stale.unlink(missing_ok=True)
    last = int((await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)
    projector = Projector(tmp, nc)
    await projector.start()
    try:
        if not await projector.wait_for(last, timeout):
            raise TimeoutError(f"replay reached seq {projector.applied_seq} of {last} in {timeout}s")
        reached = projector.applied_seq
    finally:
        await projector.stop()
    os.replace(tmp, db_path)
    Path(str(db_path) + ".wal").unlink(missing_ok=True)
    return reached


def dump(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the log determines, in a stable order."""
    return {
        table: con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        for table, (_, order) in LOG_TABLES.items()
    }
