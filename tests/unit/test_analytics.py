"""The `runs` read model and the analytics queries, on real DuckDB files written by the
projector's own fold and write path from encoded events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest

from events import subjects
from events.codec import encode
from events.job import (
    Dispatched,
    Failed,
    JobEvent,
    JobSpec,
    RetryScheduled,
    ShellExecutor,
    Started,
    Submitted,
    Succeeded,
)
from events.store import job_subject
from events.worker import Registered
from projections import analytics, queries, schema
from projections.projector import fold_batch, write_batch

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(s: float) -> datetime:
    return T0 + timedelta(seconds=s)


def run_job(
    domain: str, job_id: str, name: str, worker: str, t: float, *, ok: bool = True, wait: float = 1.0,
    dur: float = 10.0, tags: tuple[str, ...] = (), labels: dict[str, str] | None = None,
    retry_first: bool = False, tick: datetime | None = None, origin: datetime = T0, exit_code: int = 3,
) -> list[JobEvent]:  # fmt: skip
    """A job's events at fixed times: submitted `t` s after `origin`, dispatched `wait` later, started
    0.5 s after, ending `dur` after that; `retry_first` puts a failed attempt (exit 9) before it."""

    def at(s: float) -> datetime:
        return origin + timedelta(seconds=s)

    spec = JobSpec(name=name, executor=ShellExecutor(script="true"), tags=list(tags), labels=labels or {})
    c: dict[str, Any] = {"domain": domain, "actor": "test", "job_id": job_id}
    sched = {"schedule_id": "sch1", "tick": tick} if tick else {}
    out: list[JobEvent] = [Submitted(**c, spec=spec, at=at(t), **sched)]  # type: ignore[arg-type]
    n = 1
    if retry_first:
        out += [
            Dispatched(**c, worker_id=worker, attempt=1, spec=spec, at=at(t + wait)),
            Started(**c, worker_id=worker, attempt=1, at=at(t + wait + 0.5)),
            RetryScheduled(**c, worker_id=worker, attempt=1, outcome="failed", exit_code=9, error="boom",
                           not_before=at(t + wait + 2), at=at(t + wait + 1.5)),
        ]  # fmt: skip
        t, n = t + wait + 1.5, 2
    out += [
        Dispatched(**c, worker_id=worker, attempt=n, spec=spec, at=at(t + wait)),
        Started(**c, worker_id=worker, attempt=n, at=at(t + wait + 0.5)),
    ]
    end = at(t + wait + 0.5 + dur)
    if ok:
        out.append(Succeeded(**c, worker_id=worker, attempt=n, exit_code=0, at=end))
    else:
        out.append(
            Failed(
                **c,
                worker_id=worker,
                attempt=n,
                exit_code=exit_code,
                error=f"exit status {exit_code}",
                at=end,
            )
        )
    return out


def write(con: duckdb.DuckDBPyConnection, events: list[Any], first_seq: int = 1) -> None:
    raw = []
    for i, e in enumerate(events):
        subject = (
            job_subject(e) if isinstance(e, JobEvent) else subjects.worker(e.domain, e.worker_id, e.type)
        )
        raw.append((first_seq + i, subject, encode(e)))
    write_batch(con, fold_batch(raw, {}, {}, lambda keys: {}), [])


@pytest.fixture
def con(tmp_path: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(tmp_path / "rm.duckdb"))
    schema.ensure(c)
    yield c
    c.close()


def test_runs_has_one_row_per_attempt_with_waits_durations_and_lateness(
    con: duckdb.DuckDBPyConnection,
) -> None:
    events = run_job(
        "a", "j1", "etl", "w1", 0, retry_first=True, tags=("x",), labels={"team": "d"}, tick=at(-3)
    )
    write(con, events)
    rows = con.execute(
        "SELECT attempt, status, exit_code, error, worker_id, queue_wait_s, start_delay_s, duration_s, "
        "schedule_id, lateness_s, tags, labels FROM runs ORDER BY attempt"
    ).fetchall()
    assert rows == [
        (1, "failed", 9, "boom", "w1", 1.0, 0.5, 1.0, "sch1", 3.0, ["x"], ["team=d"]),
        (2, "succeeded", 0, None, "w1", 1.0, 0.5, 10.0, "sch1", 3.0, ["x"], ["team=d"]),
    ]
    # A job's rows are replaced, not appended to, when a later batch changes the job.
    assert con.execute("SELECT count(*) FROM runs").fetchone() == (2,)


def test_runs_are_replaced_when_a_later_batch_moves_the_job(con: duckdb.DuckDBPyConnection) -> None:
    events = run_job("a", "j1", "etl", "w1", 0)
    raw = [(i + 1, job_subject(e), encode(e)) for i, e in enumerate(events)]
    first = fold_batch(raw[:3], {}, {}, lambda keys: {})
    write_batch(con, first, [])
    assert con.execute("SELECT status, duration_s FROM runs").fetchall() == [("running", None)]
    state = first.jobs[("a", "j1")][0]
    write_batch(con, fold_batch(raw[3:], {("a", "j1"): state}, {}, lambda keys: {}), [])
    assert con.execute("SELECT status, duration_s FROM runs").fetchall() == [("succeeded", 10.0)]


def fleet(con: duckdb.DuckDBPyConnection) -> None:
    """Domain a: etl x4 (one failing), report x2 (one retried first); domain b: one job."""
    events: list[Any] = [
        Registered(domain="a", actor="test", worker_id="w1", max_concurrency=2, at=at(-100)),
        Registered(domain="a", actor="test", worker_id="w2", max_concurrency=2, at=at(-100)),
    ]
    for i in range(4):
        events += run_job("a", f"e{i}", "etl", "w1", 60 * i, ok=i != 2, dur=10 * (i + 1), tags=("nightly",))
    events += run_job("a", "r0", "report", "w2", 30, dur=5, labels={"team": "bi"})
    events += run_job("a", "r1", "report", "w2", 90, retry_first=True, dur=7, labels={"team": "bi"})
    events += run_job("b", "other", "etl", "w9", 0)
    write(con, events)


def win(interval: str | None = None, since: float = 0, until: float = 300) -> analytics.Window:
    return analytics.window(at(since), at(until), interval, now=at(10_000))


def test_runs_over_time_buckets_by_dispatch_time_and_status(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    out = analytics.runs_over_time(con, "a", win("1m"))
    assert [b["total"] for b in out["buckets"]] == [2, 3, 1, 1, 0]
    assert out["buckets"][2]["by_status"] == {"failed": 1}
    assert out["buckets"][1]["by_status"] == {"succeeded": 2, "failed": 1}  # r1's two attempts, e1
    assert out["buckets"][0]["start"] == T0.isoformat()


def test_durations_success_rate_and_percentiles_per_group(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    by_name = {r["name"]: r for r in analytics.durations(con, "a", win(), "name")["items"]}
    assert by_name["etl"]["runs"] == 4 and by_name["etl"]["success_rate"] == 0.75
    assert by_name["etl"]["duration_p50_s"] == 25.0 and by_name["etl"]["duration_max_s"] == 40.0
    assert by_name["report"]["runs"] == 3 and by_name["report"]["failed"] == 1
    tags = analytics.durations(con, "a", win(), "tag")["items"]
    assert [(r["tag"], r["runs"]) for r in tags] == [("nightly", 4)]
    labels = analytics.durations(con, "a", win(), "label")["items"]
    assert [(r["label"], r["runs"]) for r in labels] == [("team=bi", 3)]
    workers = {r["worker"]: r["runs"] for r in analytics.durations(con, "a", win(), "worker")["items"]}
    assert workers == {"w1": 4, "w2": 3}
    with pytest.raises(analytics.AnalyticsQueryError, match="group_by"):
        analytics.durations(con, "a", win(), "colour")


def test_slowest_failing_and_failures_by_cause(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    slow = analytics.slowest(con, "a", win(), 2)["items"]
    assert [(r["job_id"], r["duration_s"]) for r in slow] == [("e3", 40.0), ("e2", 30.0)]
    failing = analytics.failing(con, "a", win(), 10)["items"]
    assert [(r["name"], r["failures"]) for r in failing] == [("etl", 1), ("report", 1)]
    causes = analytics.failures_by_cause(con, "a", win(), 10)["items"]
    assert {(c["exit_code"], c["error"], c["attempts"]) for c in causes} == {
        (3, "exit status 3", 1),
        (9, "boom", 1),
    }


def test_queue_wait_over_time(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    buckets = analytics.queue_wait(con, "a", win("5m"))["buckets"]
    assert len(buckets) == 1 and buckets[0]["runs"] == 7
    # Every attempt waited 1 s, r1's second too: it was queued when its first attempt ended.
    assert buckets[0]["p50_s"] == 1.0 and buckets[0]["max_s"] == 1.0


def test_every_query_is_scoped_to_its_domain(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    assert analytics.runs_over_time(con, "b", win("5m"))["buckets"][0]["total"] == 1
    assert [r["job_id"] for r in analytics.slowest(con, "b", win())["items"]] == ["other"]
    assert analytics.failing(con, "b", win())["items"] == []
    assert analytics.runs_over_time(con, "nobody", win("5m"))["buckets"][0]["total"] == 0


def brute_force_busy(spans: list[tuple[float, float]], lo: float, hi: float) -> float:
    return sum(max(0.0, min(e, hi) - max(s, lo)) for s, e in spans) / (hi - lo)


def test_utilisation_equals_the_brute_force_overlap_of_every_run(con: duckdb.DuckDBPyConnection) -> None:
    rng = random.Random(7)
    events: list[Any] = [Registered(domain="a", actor="t", worker_id="w1", max_concurrency=4, at=at(-10))]
    spans = []
    for i in range(200):
        t, dur = rng.uniform(-50, 280), rng.choice([0.2, 3.0, 45.0, 130.0])
        events += run_job("a", f"u{i}", "n", "w1", t, wait=0.0, dur=dur)
        spans.append((t, t + 0.5 + dur))  # a slot is held from dispatch to the end
    write(con, events)
    w = win("7s", since=0, until=300)  # 300 s is not a multiple of 7: the last bucket is short
    out = analytics.utilisation(con, "a", w, now=at(10_000))
    for b, bucket in enumerate(out["buckets"]):
        lo, hi = b * 7.0, min((b + 1) * 7.0, 300.0)
        assert bucket["busy_slots"] == pytest.approx(brute_force_busy(spans, lo, hi), abs=1e-6), b
        assert bucket["capacity"] == 4
    [worker] = out["workers"]
    assert worker["busy_slots"] == pytest.approx(brute_force_busy(spans, 0, 300), abs=1e-6)


def test_utilisation_counts_a_running_attempt_up_to_now(con: duckdb.DuckDBPyConnection) -> None:
    events: list[Any] = [Registered(domain="a", actor="t", worker_id="w1", max_concurrency=2, at=at(-10))]
    events += run_job("a", "live", "n", "w1", 0, wait=0.0)[:3]  # started, not finished
    write(con, events)
    out = analytics.utilisation(con, "a", win("1m", 0, 120), now=at(90))
    assert [b["busy_slots"] for b in out["buckets"]] == [1.0, 0.5]
    assert out["buckets"][1]["utilisation"] == 0.25


@pytest.mark.parametrize(
    ("since", "until", "interval", "named"),
    [
        (0, 300, "5 minutes", "must look like"),
        (0, 300, "0m", "must look like"),
        (300, 0, "1m", "must be before"),
        (0, 86_400 * 30, "1m", "at most 10000"),
    ],
)
def test_bad_windows_name_the_problem(since: float, until: float, interval: str, named: str) -> None:
    with pytest.raises(analytics.AnalyticsQueryError, match=named):
        win(interval, since, until)


def test_window_defaults_to_the_last_day_and_reads_zoneless_times_as_utc() -> None:
    w = analytics.window(None, None, "1h", now=at(86_400))
    assert (w.since, w.until, w.buckets) == (T0, at(86_400), 24)
    assert analytics.window(datetime(2026, 1, 1), None, now=at(60)).since == T0


def test_schedule_lateness_and_misses(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "INSERT INTO schedule_runs VALUES "
        "(1, 'a', 's1', 'fired', ?, NULL, ?, 2.0, 'j', 'tick', 1),"
        "(2, 'a', 's1', 'fired', ?, NULL, ?, 4.0, 'k', 'tick', 1),"
        "(3, 'a', 's1', 'missed', ?, NULL, ?, NULL, NULL, 'missed 3 ticks', 3),"
        "(4, 'b', 's1', 'missed', ?, NULL, ?, NULL, NULL, 'missed 5 ticks', 5)",
        [at(0), at(2), at(60), at(64), at(120), at(121), at(0), at(1)],
    )
    [item] = analytics.schedule_lateness(con, "a", win())["items"]
    assert (item["fired"], item["missed"], item["lateness_max_s"], item["lateness_p50_s"]) == (2, 3, 4.0, 3.0)


def test_job_counts_and_submission_time_filters(con: duckdb.DuckDBPyConnection) -> None:
    fleet(con)
    assert queries.count_jobs(con, "a") == {"total": 6}
    by_status = queries.count_jobs(con, "a", "status")["counts"]
    assert by_status == [{"status": "succeeded", "count": 5}, {"status": "failed", "count": 1}]
    by_tag = queries.count_jobs(con, "a", "tag")["counts"]
    assert by_tag == [{"tag": "nightly", "count": 4}]
    assert queries.count_jobs(con, "a", "worker", since=at(60), until=at(121))["total"] == 3
    items, _ = queries.list_jobs(con, "a", since=at(60), until=at(120))
    assert sorted(j["id"] for j in items) == ["e1", "r1"]
    with pytest.raises(queries.InvalidQuery, match="group_by"):
        queries.count_jobs(con, "a", "colour")
    with pytest.raises(queries.InvalidQuery, match="before"):
        queries.list_jobs(con, "a", since=at(5), until=at(5))
    # A time without a zone is UTC, also beside one with a zone.
    naive = queries.count_jobs(con, "a", since=datetime(2026, 1, 1, 0, 1), until=at(121))
    assert naive["total"] == 3


def test_times_out_of_range_are_refused_not_crashed_on() -> None:
    with pytest.raises(analytics.AnalyticsQueryError, match="between the years"):
        analytics.window(datetime.fromisoformat("0001-01-01T00:00:00+05:00"), None, now=at(0))
    with pytest.raises(analytics.AnalyticsQueryError, match="between the years"):
        analytics.window(None, datetime(1, 1, 1, tzinfo=UTC), now=at(0))
