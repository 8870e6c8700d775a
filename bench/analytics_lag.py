"""Read-model lag at a steady rate: how long after a job event is made the projector has it in
DuckDB (committed, so every read sees it, the `runs` row included).

A nats-server on a free loopback port and the projector run here, as in the API process; a
second process appends job events at `--rate` jobs/s through JetStream (acknowledged
publishes): per job `submitted`, then `dispatched` and `started` 20 ms later, `succeeded`
100 ms after that, so 4 events per job. Every 2 ms this process notes how far the projector
has applied; an event's lag is the first moment it was applied minus its own `at` (stamped
when it was made, on the same host clock), so the append itself counts as lag too.

Run: `.venv/bin/python -m bench.analytics_lag` (`--rate 1000 --seconds 30` are the defaults).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from events.codec import encode
from events.ids import new_id
from events.job import Dispatched, JobEvent, JobSpec, ShellExecutor, Started, Submitted, Succeeded
from events.store import Appended, Publisher, job_subject
from events.streams import EVENTS_STREAM, provision
from projections import mapping
from projections.projector import Projector
from services.runtime.connect import connect, jetstream
from services.runtime.nats_server import DEFAULT_SYNC, SYNC_ENV, NatsServer
from services.runtime.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
TICK_S = 0.01
POLL_S = 0.002
MAX_INFLIGHT = 20_000
DOMAIN = "prod"
SPEC = JobSpec(name="lag", executor=ShellExecutor(script="true"), tags=["bench"])


def stage(job_id: str, kind: int) -> list[JobEvent]:
    c = {"domain": DOMAIN, "actor": "bench", "job_id": job_id}
    if kind == 0:
        return [Submitted(**c, spec=SPEC)]  # type: ignore[arg-type]
    if kind == 1:
        return [
            Dispatched(**c, worker_id="w1", attempt=1, spec=SPEC),  # type: ignore[arg-type]
            Started(**c, worker_id="w1", attempt=1),  # type: ignore[arg-type]
        ]
    return [Succeeded(**c, worker_id="w1", attempt=1)]  # type: ignore[arg-type]


async def append(url: str, rate: int, seconds: float) -> None:
    """The appender process: `rate` jobs/s, each tick's events published at once, open loop (at
    most MAX_INFLIGHT unacknowledged); every ack is awaited by the end."""
    nc = await connect(url, "lag-appender")
    publisher = Publisher(nc)  # the store's pipelined publishes: many in flight, each acknowledged
    per_tick = rate * TICK_S
    ticks = int(seconds / TICK_S)
    jobs: list[list[str]] = []
    inflight: list[asyncio.Future[Appended]] = []
    started = time.monotonic()
    made = 0.0
    for k in range(ticks + 10):
        made += per_tick if k < ticks else 0
        new = [new_id() for _ in range(int(made) - sum(len(j) for j in jobs))] if k < ticks else []
        jobs.append(new)
        batch = [e for j in new for e in stage(j, 0)]
        batch += [e for j in (jobs[k - 2] if k >= 2 else []) for e in stage(j, 1)]
        batch += [e for j in (jobs[k - 10] if k >= 10 else []) for e in stage(j, 2)]
        # Open loop: the next tick's events go out on time whether or not these are acknowledged.
        inflight += [await publisher.publish(job_subject(e), encode(e)) for e in batch]
        if len(inflight) > MAX_INFLIGHT:
            await asyncio.gather(*inflight[: len(inflight) // 2])
        for f in inflight:
            if f.done():
                f.result()  # a refused append ends the run, loudly
        inflight = [f for f in inflight if not f.done()]
        delay = started + (k + 1) * TICK_S - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    await asyncio.gather(*inflight)
    elapsed = time.monotonic() - started
    total = sum(len(j) for j in jobs)
    print(json.dumps({"jobs": total, "seconds": elapsed, "jobs_per_s": total / elapsed}), flush=True)
    await nc.close()


async def follow(url: str, db: Path, rate: int, seconds: float) -> dict[str, object]:
    nc = await connect(url, "lag-bench")
    await provision(jetstream(nc))
    projector = Projector(db, nc)
    await projector.start()
    samples: list[tuple[float, int]] = []
    done = asyncio.Event()

    async def poll() -> None:
        last = -1
        while not done.is_set():
            if projector.applied_seq != last:
                last = projector.applied_seq
                samples.append((time.time(), last))
            await asyncio.sleep(POLL_S)

    poller = asyncio.create_task(poll())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.analytics_lag", "--append", url, "--rate", str(rate),
        "--seconds", str(seconds), stdout=subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    out, _ = await proc.communicate()
    appended = json.loads(out.decode().strip().splitlines()[-1])
    last = (await jetstream(nc).stream_info(EVENTS_STREAM)).state.last_seq
    assert await projector.wait_for(last, 60), "the projector never caught up"
    await asyncio.sleep(0.05)
    done.set()
    await poller
    cur = projector.cursor()
    made = dict(cur.execute('SELECT seq, epoch_us("at") FROM events ORDER BY seq').fetchall())
    runs = cur.execute("SELECT count(*) FROM runs").fetchone()
    cur.close()
    await projector.stop()
    await nc.close()
    lags: list[float] = []
    before = 0
    for at, applied in samples:
        lags += [at - made[s] / 1e6 for s in range(before + 1, applied + 1) if s in made]
        before = max(before, applied)
    lags.sort()
    return {
        "appended": appended,
        "events": len(lags),
        "runs_rows": runs[0] if runs else 0,
        "batches": projector.batches,
        "lag_p50_ms": statistics.median(lags) * 1000,
        "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000,
        "lag_max_ms": lags[-1] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=1000, help="jobs per second (4 events each)")
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument(
        "--nats-sync-interval", default=None,
        help="the server's fsync interval (e.g. 2m); default jobstream's own, fsync before every ack",
    )  # fmt: skip
    parser.add_argument(
        "--without-runs", action="store_true",
        help="project no `runs` rows (everything else as usual), to see what that table costs",
    )  # fmt: skip
    parser.add_argument("--append", metavar="NATS_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.append:
        asyncio.run(append(args.append, args.rate, args.seconds))
        return
    if args.nats_sync_interval:
        os.environ[SYNC_ENV] = args.nats_sync_interval
    if args.without_runs:
        mapping.run_rows = lambda state: []
    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats", port=free_port(), log_file=Path(tmp) / "nats.log").start()
        try:
            load_before = os.getloadavg()[0]
            result = asyncio.run(follow(server.url, Path(tmp) / "rm.duckdb", args.rate, args.seconds))
            load_after = os.getloadavg()[0]
        finally:
            server.stop()
    appended = result["appended"]
    assert isinstance(appended, dict)
    print(f"appended {appended['jobs']:,} jobs in {appended['seconds']:.1f} s "
          f"({appended['jobs_per_s']:.0f} jobs/s, {result['events']:,} events)")  # fmt: skip
    print(f"read-model lag: p50 {result['lag_p50_ms']:.0f} ms, p99 {result['lag_p99_ms']:.0f} ms, "
          f"max {result['lag_max_ms']:.0f} ms over {result['batches']} batches; "
          f"{result['runs_rows']:,} runs rows")  # fmt: skip
    print(f"{os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} after, "
          f"server fsync: {args.nats_sync_interval or DEFAULT_SYNC}"
          f"{', without runs rows' if args.without_runs else ''}")  # fmt: skip
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"analytics-lag-{stamp}.json").write_text(
        json.dumps(
            {
                "rate": args.rate,
                "nats_sync_interval": args.nats_sync_interval or DEFAULT_SYNC,
                "without_runs": args.without_runs,
                "seconds": args.seconds,
                "machine": platform.platform(),
                "load_before": load_before,
                "load_after": load_after,
                **result,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
