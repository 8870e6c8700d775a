"""Analytics query benchmark: every /analytics query over a read model of 1,000,000 runs.

Fills a fresh DuckDB read model (the projector's own schema) with synthetic rows made by
DuckDB itself: N runs spread over the 24 hours before a fixed instant, 90% in the domain
queried, across 200 job names, 10 tags, 5 labels, 50 workers, 5% failed, 1% timed out,
some retried, plus schedule_runs for 100 schedules. Then runs each query of
projections/analytics.py (the very functions behind the routes) many times on one cursor
and prints p50/p95/max per query. Target: p95 under 100 ms.

Run: `.venv/bin/python -m bench.analytics` (`--runs 100000 --repeat 20` for a quick look).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb

from projections import analytics, analytics_sql, schema

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
DOMAIN = "prod"
NOW = datetime(2026, 1, 2, tzinfo=UTC)
DAY_US = 86_400 * 1_000_000

FILL_RUNS = """
INSERT INTO runs
SELECT
    CASE WHEN i % 10 = 9 THEN 'other' ELSE 'prod' END AS domain,
    'job' || lpad(i::VARCHAR, 9, '0') AS job_id,
    'job-' || (hash(i) % 200)::VARCHAR AS name,
    ['t' || (i % 10)::VARCHAR] AS tags,
    ['team=' || (i % 5)::VARCHAR] AS labels,
    'svc' AS "user",
    'w' || (hash(i * 7) % 50)::VARCHAR AS worker_id,
    'shell' AS executor,
    CASE WHEN i % 20 = 0 THEN 2 ELSE 1 END AS attempt,
    CASE WHEN i % 100 = 0 THEN 'timed_out' WHEN i % 20 = 3 THEN 'failed' ELSE 'succeeded' END AS status,
    CASE WHEN i % 20 = 3 THEN 1 + (i % 3) WHEN i % 100 = 0 THEN NULL ELSE 0 END AS exit_code,
    CASE WHEN i % 20 = 3 THEN 'exit status ' || (1 + (i % 3))::VARCHAR
         WHEN i % 100 = 0 THEN 'ran past its timeout' END AS error,
    make_timestamptz(q) AS queued_at,
    make_timestamptz(q + wait) AS dispatched_at,
    make_timestamptz(q + wait + delay) AS started_at,
    make_timestamptz(q + wait + delay + dur) AS finished_at,
    wait / 1e6, delay / 1e6, dur / 1e6,
    NULL, NULL, NULL, NULL
FROM (
    SELECT i, ({start_us} + (i * {span_us}) // {n})::BIGINT AS q,
           (1000 + hash(i * 3) % 2000000)::BIGINT AS wait, (500 + hash(i * 5) % 20000)::BIGINT AS delay,
           (10000 + hash(i * 11) % 120000000)::BIGINT AS dur
    FROM range({n}) t(i)
)
"""

FILL_WORKERS = """
INSERT INTO workers
SELECT d, 'w' || i::VARCHAR, 'active', [], [], ['shell'], 8, 'host', make_timestamptz({start_us}),
       make_timestamptz({start_us}), NULL, 0, '{{}}'
FROM range(50) t(i), (VALUES ('prod'), ('other')) v(d)
"""

FILL_SCHEDULE_RUNS = """
INSERT INTO schedule_runs
SELECT i, 'prod', 's' || (i % 100)::VARCHAR, CASE WHEN i % 50 = 0 THEN 'missed' ELSE 'fired' END,
       make_timestamptz(({start_us} + i * 60000000 // 100)::BIGINT), NULL,
       make_timestamptz(({start_us} + i * 60000000 // 100 + hash(i) % 3000000)::BIGINT),
       CASE WHEN i % 50 = 0 THEN NULL ELSE (hash(i) % 3000000) / 1e6 END,
       NULL, NULL, CASE WHEN i % 50 = 0 THEN 3 ELSE 1 END
FROM range(144000) t(i)
"""


def fill(path: Path, n: int) -> float:
    started = time.perf_counter()
    con = duckdb.connect(str(path))
    schema.ensure(con)
    start_us = analytics._us(NOW) - DAY_US
    con.execute(FILL_RUNS.format(start_us=start_us, span_us=DAY_US, n=n))
    con.execute(FILL_WORKERS.format(start_us=start_us))
    con.execute(FILL_SCHEDULE_RUNS.format(start_us=start_us))
    con.execute("CHECKPOINT")
    con.close()
    return time.perf_counter() - started


def cases() -> dict[str, Callable[[duckdb.DuckDBPyConnection], Any]]:
    day = analytics.window(None, None, None, now=NOW)
    hourly = analytics.window(None, None, "1h", now=NOW)
    fine = analytics.window(None, None, "5m", now=NOW)
    hour = analytics.window(NOW - timedelta(hours=1), NOW, "1m", now=NOW)
    return {
        "runs over time (24h, 5m)": lambda c: analytics.runs_over_time(c, DOMAIN, fine),
        "runs over time (1h, 1m)": lambda c: analytics.runs_over_time(c, DOMAIN, hour),
        "durations by name": lambda c: analytics.durations(c, DOMAIN, day, "name"),
        "durations by tag": lambda c: analytics.durations(c, DOMAIN, day, "tag"),
        "durations by label": lambda c: analytics.durations(c, DOMAIN, day, "label"),
        "durations by worker": lambda c: analytics.durations(c, DOMAIN, day, "worker"),
        "queue wait (24h, 5m)": lambda c: analytics.queue_wait(c, DOMAIN, fine),
        "slowest 20": lambda c: analytics.slowest(c, DOMAIN, day, 20),
        "failing 20": lambda c: analytics.failing(c, DOMAIN, day, 20),
        "failures by cause": lambda c: analytics.failures_by_cause(c, DOMAIN, day, 50),
        "utilisation (24h, 1h)": lambda c: analytics.utilisation(c, DOMAIN, hourly, NOW),
        "utilisation (24h, 5m)": lambda c: analytics.utilisation(c, DOMAIN, fine, NOW),
        "schedule lateness": lambda c: analytics.schedule_lateness(c, DOMAIN, day, 100),
    }


SQL_CASES = {
    "sql (sandbox): count(*) of runs": "SELECT count(*) FROM runs",
    "sql (sandbox): p99 per name": "SELECT name, quantile_cont(duration_s, 0.99) FROM runs GROUP BY name",
}


def measure(path: Path, repeat: int) -> list[dict[str, Any]]:
    """Each query `repeat` times, round-robin, so a burst of load elsewhere on the machine lands
    on every query alike rather than on whichever happened to run then."""
    con = duckdb.connect(str(path), read_only=True)
    con.execute("SET TimeZone = 'UTC'")
    todo = cases()
    for fn in todo.values():
        fn(con)  # warm: the first run reads the file into DuckDB's buffer pool
    times: dict[str, list[float]] = {name: [] for name in todo}
    cpu: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(repeat):
        for name, fn in todo.items():
            t0, c0 = time.perf_counter(), time.process_time()
            fn(con)
            times[name].append((time.perf_counter() - t0) * 1000)
            cpu[name].append((time.process_time() - c0) * 1000)
    # `jobstream sql` copies the tables a query names into its sandbox: what that costs.
    for name, query in SQL_CASES.items():
        times[name] = []
        for _ in range(max(3, repeat // 10)):
            t0 = time.perf_counter()
            analytics_sql.run_sql(con, query, None)
            times[name].append((time.perf_counter() - t0) * 1000)
    con.close()
    out = []
    for name, ts in times.items():
        ts.sort()
        p95 = ts[min(len(ts) - 1, round(0.95 * (len(ts) - 1)))]
        # CPU time (all DuckDB threads) depends far less on what else the machine runs than wall time.
        busy = statistics.median(cpu[name]) if name in cpu else None
        out.append(
            {
                "query": name,
                "p50_ms": statistics.median(ts),
                "p95_ms": p95,
                "max_ms": ts[-1],
                "cpu_p50_ms": busy,
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=1_000_000, help="synthetic runs in the read model")
    parser.add_argument("--repeat", type=int, default=50, help="timed runs of each query")
    parser.add_argument("--db", type=Path, help="keep the read model here instead of a temporary file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.db or Path(tmp) / "analytics.duckdb"
        path.unlink(missing_ok=True)
        filled = fill(path, args.runs)
        print(f"filled {args.runs:,} runs in {filled:.1f} s ({path.stat().st_size / 1e6:.0f} MB)")
        load_before = os.getloadavg()[0]
        results = measure(path, args.repeat)
        load_after = os.getloadavg()[0]
    # The figures depend on what else the machine runs: say so next to them.
    print(f"{os.cpu_count()} CPUs, load average {load_before:.1f} before and {load_after:.1f} after")
    print(
        f"\n| query over {args.runs:,} runs | p50 ms | p95 ms | max ms | CPU p50 ms |\n"
        "|---|---:|---:|---:|---:|"
    )
    for r in results:
        busy = f"{r['cpu_p50_ms']:.1f}" if r["cpu_p50_ms"] is not None else ""
        print(f"| {r['query']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['max_ms']:.1f} | {busy} |")
    worst = max(r["p95_ms"] for r in results if not r["query"].startswith("sql"))
    print(f"\nworst p95: {worst:.1f} ms (target < 100 ms): {'met' if worst < 100 else 'NOT met'}")
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"analytics-{stamp}.json").write_text(
        json.dumps(
            {
                "runs": args.runs,
                "repeat": args.repeat,
                "machine": platform.platform(),
                "cpus": os.cpu_count(),
                "load_before": load_before,
                "load_after": load_after,
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
