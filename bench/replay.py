"""`jobstream replay` throughput (issue 11): events replayed into a fresh DuckDB file per second.

Starts a nats-server on a free loopback port in a temporary directory, writes the same
synthetic log as bench/audit.py (`--events` / 4 four-event jobs on one registered worker,
through events/store.py's Publisher), then times `projections.replay.replay` into a new file
(read, decode, fold, write, final checkpoint) and prints events/s and the peak RSS of the
replay alone (measured in a child process, so the writer's memory does not count). The target
is 50,000 events/s on 1,000,000 events: `--events 1000000`. `--live` also times the live
projector's path (what `jobstream rebuild` did before) on the same log.

Run: `python -m bench.replay` (100,000 events) or `python -m bench.replay --events 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import resource
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.audit import _BenchServer, write_log
from services.runtime.connect import connect
from services.runtime.ports import free_port


async def _replay(url: str, db: Path) -> dict[str, Any]:
    from projections.replay import replay

    nc = await connect(url, "bench-replay")
    try:
        began = time.perf_counter()
        prog = await replay(nc, db)
        took = time.perf_counter() - began
    finally:
        await nc.close()
    return {"events": prog.events, "seq": prog.seq, "replay_s": round(took, 2),
            "replay_events_per_s": round(prog.events / took)}  # fmt: skip


async def _live(url: str, db: Path) -> dict[str, Any]:
    from events.streams import EVENTS_STREAM
    from projections.projector import Projector

    nc = await connect(url, "bench-live")
    try:
        last = int((await nc.jetstream().stream_info(EVENTS_STREAM)).state.last_seq)
        began = time.perf_counter()
        projector = Projector(db, nc)
        await projector.start()
        try:
            assert await projector.wait_for(last, 3600)
        finally:
            await projector.stop()
        took = time.perf_counter() - began
    finally:
        await nc.close()
    return {"live_s": round(took, 2), "live_events_per_s": round(last / took)}


def _child(kind: str, url: str, db: str, out: Any) -> None:
    result = asyncio.run((_replay if kind == "replay" else _live)(url, Path(db)))
    result[f"{kind}_max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    out.send(result)


def _in_child(kind: str, url: str, db: Path) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(kind, url, str(db), theirs))
    proc.start()
    result: dict[str, Any] = ours.recv()
    proc.join()
    return result


def bench(events: int, tmp: Path, live: bool) -> dict[str, Any]:
    server = _BenchServer(tmp / "nats", port=free_port(), log_file=tmp / "nats.log").start()
    try:
        jobs = max(1, events // 4)
        wrote = asyncio.run(write_log(server.url, jobs))
        result: dict[str, Any] = {"log_events": jobs * 4 + 1, "write_s": round(wrote, 2)}
        result |= _in_child("replay", server.url, tmp / "replay.duckdb")
        result["db_mb"] = round((tmp / "replay.duckdb").stat().st_size / 2**20)
        if live:
            result |= _in_child("live", server.url, tmp / "live.duckdb")
    finally:
        server.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="log size (four events per job)")
    parser.add_argument("--live", action="store_true", help="also time the live projector's path")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        result = bench(args.events, Path(tmp), args.live)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
