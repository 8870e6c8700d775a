"""`jobstream events export` and `import` throughput: events per second, as the CLI runs them.

Starts a nats-server on a free loopback port in a temporary directory, writes a synthetic log of
`--events` (four-event jobs, as bench/audit.py writes them), then times, each as a subprocess:
`events export --format jsonl`, `events export --format parquet`, and `events import` of the JSON
lines into a second, empty server (with `--fsync always`, what `jobstream up` runs, every
acknowledged event is on disk; the default is the nats-server default, as in bench/audit.py).
Checks the copy holds the same sequences.

Run: `python -m bench.events_io` (100,000 events) or `python -m bench.events_io --events 1000000`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.audit import _BenchServer, write_log
from events.streams import EVENTS_STREAM
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import NatsServer
from services.runtime.ports import free_port


def _cli(*args: str) -> tuple[float, str]:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "events", *args], capture_output=True, text=True, timeout=3600
    )
    took = time.perf_counter() - began
    if done.returncode != 0:
        raise RuntimeError(f"events {args[0]} failed: {done.stderr}")
    return took, done.stderr + done.stdout


async def _state(url: str) -> tuple[int, int, int]:
    nc = await connect(url, "bench")
    try:
        s = (await jetstream(nc).stream_info(EVENTS_STREAM)).state
        return int(s.first_seq), int(s.last_seq), int(s.messages)
    finally:
        await nc.close()


def bench(events: int, tmp: Path, fsync_always: bool) -> dict[str, Any]:
    source = _BenchServer(tmp / "a", port=free_port(), log_file=tmp / "a.log").start()
    target_dir = tmp / "b"
    target_class = NatsServer if fsync_always else _BenchServer
    target = target_class(target_dir, port=free_port(), log_file=tmp / "b.log")
    try:
        asyncio.run(write_log(source.url, max(1, events // 4)))
        original = asyncio.run(_state(source.url))
        jsonl, parquet = tmp / "log.jsonl", tmp / "log.parquet"
        export_jsonl, _ = _cli("export", "--nats-url", source.url, "-o", str(jsonl))
        export_parquet, _ = _cli(
            "export", "--nats-url", source.url, "--format", "parquet", "-o", str(parquet)
        )
        target.start()
        imported, _ = _cli("import", str(jsonl), "--nats-url", target.url)
        copy = asyncio.run(_state(target.url))
    finally:
        target.stop()
        source.stop()
    if copy != original:
        raise RuntimeError(f"the copy holds {copy}, the original {original}")
    n = original[2]
    return {
        "events": n,
        "export_jsonl_s": round(export_jsonl, 2),
        "export_jsonl_events_per_s": round(n / export_jsonl),
        "jsonl_mb": round(jsonl.stat().st_size / 2**20, 1),
        "export_parquet_s": round(export_parquet, 2),
        "export_parquet_events_per_s": round(n / export_parquet),
        "parquet_mb": round(parquet.stat().st_size / 2**20, 1),
        "import_s": round(imported, 2),
        "import_events_per_s": round(n / imported),
        "import_target_fsync": "always" if fsync_always else "nats-server default",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="log size (four events per job)")
    parser.add_argument(
        "--fsync", choices=["default", "always"], default="default", help="the import target's fsync"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        result = bench(args.events, Path(tmp), args.fsync == "always")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
