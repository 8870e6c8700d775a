"""Replay the whole log into a fresh read model, and dump tables to compare two of them."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
from nats.aio.client import Client as NATS

from projections.replay import Progress, discard, replay, swap_in
from projections.schema import LOG_TABLES

REBUILD_TIMEOUT_S = 3600.0


async def rebuild(
    db_path: Path,
    nc: NATS,
    timeout: float = REBUILD_TIMEOUT_S,
    on_progress: Callable[[Progress], None] | None = None,
) -> int:
    """Build `db_path` from sequence 1 beside the old file (a bulk replay), then swap it in;
    returns the sequence reached."""
    tmp = db_path.with_name(db_path.name + ".rebuild")
    discard(tmp)
    try:
        prog = await asyncio.wait_for(replay(nc, tmp, on_progress=on_progress), timeout)
    except BaseException:
        discard(tmp)
        raise
    swap_in(tmp, db_path)
    return prog.seq


def dump(con: duckdb.DuckDBPyConnection) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table the log determines, in a stable order."""
    return {
        table: con.execute(f"SELECT * FROM {table} ORDER BY {order}").fetchall()
        for table, (_, order) in LOG_TABLES.items()
    }
