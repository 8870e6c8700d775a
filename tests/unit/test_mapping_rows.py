"""The job, attempt and run rows are tuples in their table's column order (projections/mapping.py):
each column read back by name holds the value it is named for, times all distinct."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import duckdb

from projections import schema
from tests.unit.test_analytics import T0, run_job, write


def _named(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, object]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _naive(value: object) -> object:
    assert isinstance(value, datetime), value
    return value.replace(tzinfo=None)


def test_every_column_holds_what_it_is_named_for(tmp_path: Path) -> None:
    con = duckdb.connect(str(tmp_path / "rm.duckdb"))
    schema.ensure(con)
    tick = T0 - timedelta(seconds=3)
    events = run_job(
        "a", "j1", "etl", "w1", 0, retry_first=True, tags=("x", "y"), labels={"team": "d"}, tick=tick
    )
    write(con, events)

    def t(s: float) -> object:
        return (T0 + timedelta(seconds=s)).replace(tzinfo=None)

    [job] = _named(con, "SELECT * FROM jobs")
    assert set(job) == set(schema.JOBS.names)
    assert {k: job[k] for k in ("domain", "id", "name", "status", "executor", "worker_id", "attempt")} == {
        "domain": "a", "id": "j1", "name": "etl", "status": "succeeded", "executor": "shell",
        "worker_id": "w1", "attempt": 2,
    }  # fmt: skip
    assert (job["tags"], job["labels"], job["exit_code"], job["error"], job["last_seq"]) == (
        ["x", "y"], ["team=d"], 0, None, len(events),
    )  # fmt: skip
    # Submitted at 0; attempt 1 dispatched 1, started 1.5, failed 2.5; attempt 2 dispatched 3.5,
    # started 4, succeeded 14.
    got = {
        k: job[k].replace(tzinfo=None) for k in ("submitted_at", "dispatched_at", "started_at", "finished_at")
    }  # type: ignore[attr-defined]
    assert got == {"submitted_at": t(0), "dispatched_at": t(3.5), "started_at": t(4), "finished_at": t(14)}

    attempts = _named(con, "SELECT * FROM attempts ORDER BY n")
    assert [set(a) for a in attempts] == [set(schema.ATTEMPTS.names)] * 2
    times = ("queued_at", "dispatched_at", "started_at", "finished_at")
    seen = [
        (a["n"], a["status"], a["worker_id"], a["exit_code"], a["error"], *(_naive(a[k]) for k in times))
        for a in attempts
    ]
    assert seen == [
        (1, "failed", "w1", 9, "boom", t(0), t(1), t(1.5), t(2.5)),
        (2, "succeeded", "w1", 0, None, t(2.5), t(3.5), t(4), t(14)),
    ]

    runs = _named(con, "SELECT * FROM runs ORDER BY attempt")
    assert [set(r) for r in runs] == [set(schema.RUNS.names)] * 2
    last = runs[1]
    assert (last["name"], last["user"], last["executor"], last["schedule_id"], last["template"]) == (
        "etl", None, "shell", "sch1", None,
    )  # fmt: skip
    assert (last["queue_wait_s"], last["start_delay_s"], last["duration_s"], last["lateness_s"]) == (
        1.0,
        0.5,
        10.0,
        3.0,
    )
    assert _naive(last["tick"]) == tick.replace(tzinfo=None)
    con.close()
