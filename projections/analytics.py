"""Analytics over the `runs` and `schedule_runs` read models: one function per question.

Every query is scoped to one domain and a half-open time range [since, until); those over
time cut it into buckets of `interval`, returned densely (empty buckets included) so a
chart needs no gap filling. The SQL lives here, not in the routes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import duckdb

from projections.queries import InvalidQuery

Cursor = duckdb.DuckDBPyConnection

MAX_BUCKETS = 10_000
MAX_TOP = 1_000
GROUPS = {"name": "name", "worker": "worker_id", "tag": "unnest(tags)", "label": "unnest(labels)"}
# Attempt outcomes that count as failures; `cancelled` is someone's decision, not a failure.
FAILURES = ("failed", "timed_out", "lost")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")


class AnalyticsQueryError(InvalidQuery):
    """A time range, interval or grouping the analytics cannot answer (the API's 422)."""

    code = "invalid_analytics_query"


@dataclass(frozen=True)
class Window:
    """The range a query covers, in microseconds since the epoch, and its bucket width."""

    since: datetime
    until: datetime
    step_s: int = 0

    @property
    def since_us(self) -> int:
        return _us(self.since)

    @property
    def until_us(self) -> int:
        return _us(self.until)

    @property
    def step_us(self) -> int:
        return self.step_s * 1_000_000

    @property
    def buckets(self) -> int:
        return -(-(self.until_us - self.since_us) // self.step_us) if self.step_s else 0

    def start(self, bucket: int) -> str:
        return (self.since + timedelta(seconds=bucket * self.step_s)).isoformat()


def _us(at: datetime) -> int:
    delta = at - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def parse_interval(text: str) -> int:
    """Seconds in an interval like 30s, 5m, 1h or 1d."""
    match = _INTERVAL.match(text.strip())
    if match is None:
        raise AnalyticsQueryError(f"interval {text!r} must look like 30s, 5m, 1h or 1d")
    return int(match.group(1)) * _UNITS[match.group(2)]


def window(
    since: datetime | None, until: datetime | None, interval: str | None = None, *, now: datetime
) -> Window:
    """The range to query: default the 24 hours before `now`; refuses an empty range and more
    than MAX_BUCKETS buckets, which no chart can show and whose dense answer alone is megabytes."""
    try:
        until = _aware(until) if until is not None else _aware(now)
        since = _aware(since) if since is not None else until - timedelta(days=1)
    except OverflowError as exc:
        raise AnalyticsQueryError("since and until must lie between the years 1 and 9999 in UTC") from exc
    if since >= until:
        raise AnalyticsQueryError(f"since ({since.isoformat()}) must be before until ({until.isoformat()})")
    if interval is None:
        return Window(since, until)
    win = Window(since, until, parse_interval(interval))
    if win.buckets > MAX_BUCKETS:
        raise AnalyticsQueryError(
            f"{win.buckets} buckets of {interval} between since and until; at most {MAX_BUCKETS}: "
            "choose a longer interval or a shorter range"
        )
    return win


def _aware(at: datetime) -> datetime:
    """A time without a zone is UTC, the zone every time in the read model is kept in."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _top(limit: int) -> int:
    if not 1 <= limit <= MAX_TOP:
        raise AnalyticsQueryError(f"limit must be between 1 and {MAX_TOP}")
    return limit


_IN_RANGE = "domain = ? AND dispatched_at >= ? AND dispatched_at < ?"


def _range(domain: str, win: Window) -> list[Any]:
    return [domain, win.since, win.until]


def _bucket(column: str, win: Window) -> str:
    # Integers from Window, never user text: safe to inline, and it keeps the plan constant-folded.
    return f"(epoch_us({column}) - {win.since_us}) // {win.step_us}"


def _q(values: list[Any] | None, i: int) -> float | None:
    return None if values is None or values[i] is None else float(values[i])


def runs_over_time(cur: Cursor, domain: str, win: Window) -> dict[str, Any]:
    """Attempts per bucket of their dispatch time, counted by their status."""
    rows = cur.execute(
        f"SELECT {_bucket('dispatched_at', win)} AS b, status, count(*) FROM runs WHERE {_IN_RANGE} "
        "GROUP BY ALL",
        _range(domain, win),
    ).fetchall()
    counts: dict[int, dict[str, int]] = {}
    for b, status, n in rows:
        counts.setdefault(int(b), {})[status] = int(n)
    buckets = []
    for b in range(win.buckets):
        by_status = counts.get(b, {})
        buckets.append({"start": win.start(b), "total": sum(by_status.values()), "by_status": by_status})
    return {"interval_s": win.step_s, "buckets": buckets}


def durations(
    cur: Cursor, domain: str, win: Window, group_by: str = "name", limit: int = 100
) -> dict[str, Any]:
    """Per job name (or tag, label, worker): runs, success rate, and duration percentiles."""
    if group_by not in GROUPS:
        raise AnalyticsQueryError(f"group_by must be one of {', '.join(GROUPS)}")
    failures = ", ".join(f"'{s}'" for s in FAILURES)
    rows = cur.execute(
        f"""
        SELECT key, count(*) AS runs, count(finished_at) AS finished,
               count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
               count(*) FILTER (WHERE status IN ({failures})) AS failed,
               quantile_cont(duration_s, [0.5, 0.9, 0.99]) AS q, avg(duration_s), max(duration_s)
        FROM (SELECT {GROUPS[group_by]} AS key, status, finished_at, duration_s FROM runs WHERE {_IN_RANGE})
        GROUP BY key ORDER BY runs DESC, key LIMIT ?
        """,
        [*_range(domain, win), _top(limit)],
    ).fetchall()
    items = [
        {
            group_by: key, "runs": int(runs), "finished": int(finished), "succeeded": int(ok),
            "failed": int(bad), "success_rate": (ok / finished) if finished else None,
            "duration_p50_s": _q(q, 0), "duration_p90_s": _q(q, 1), "duration_p99_s": _q(q, 2),
            "duration_avg_s": avg, "duration_max_s": top,
        }
        for key, runs, finished, ok, bad, q, avg, top in rows
    ]  # fmt: skip
    return {"group_by": group_by, "items": items}


def queue_wait(cur: Cursor, domain: str, win: Window) -> dict[str, Any]:
    """Queue wait (queued → dispatched) per bucket of dispatch time: count and percentiles."""
    rows = cur.execute(
        f"SELECT {_bucket('dispatched_at', win)} AS b, count(*), avg(queue_wait_s), "
        "quantile_cont(queue_wait_s, [0.5, 0.9, 0.99]), max(queue_wait_s) "
        f"FROM runs WHERE {_IN_RANGE} GROUP BY b",
        _range(domain, win),
    ).fetchall()
    found = {int(r[0]): r for r in rows}
    buckets = []
    for b in range(win.buckets):
        row = found.get(b)
        q = row[3] if row else None
        buckets.append(
            {"start": win.start(b), "runs": int(row[1]) if row else 0, "avg_s": row[2] if row else None,
             "p50_s": _q(q, 0), "p90_s": _q(q, 1), "p99_s": _q(q, 2), "max_s": row[4] if row else None}
        )  # fmt: skip
    return {"interval_s": win.step_s, "buckets": buckets}


def slowest(cur: Cursor, domain: str, win: Window, limit: int = 20) -> dict[str, Any]:
    """The longest finished attempts. The top N is found on two columns, then its rows are
    fetched by rowid: sorting whole rows to keep N costs twice as much at 1,000,000 runs."""
    rows = cur.execute(
        f"""
        WITH top AS (
            SELECT rowid AS r FROM runs WHERE {_IN_RANGE} AND duration_s IS NOT NULL
            ORDER BY duration_s DESC, rowid LIMIT ?
        )
        SELECT job_id, name, attempt, worker_id, status, started_at, duration_s
        FROM runs JOIN top ON runs.rowid = top.r ORDER BY duration_s DESC, job_id, attempt
        """,
        [*_range(domain, win), _top(limit)],
    ).fetchall()
    keys = ("job_id", "name", "attempt", "worker_id", "status", "started_at", "duration_s")
    return {"items": [dict(zip(keys, _plain(r), strict=True)) for r in rows]}


def failing(cur: Cursor, domain: str, win: Window, limit: int = 20) -> dict[str, Any]:
    """The job names with the most failed attempts, with their failure rate."""
    failures = ", ".join(f"'{s}'" for s in FAILURES)
    rows = cur.execute(
        f"""
        SELECT name, count(*) FILTER (WHERE status IN ({failures})) AS failures, count(finished_at),
               max(finished_at) FILTER (WHERE status IN ({failures}))
        FROM runs WHERE {_IN_RANGE} GROUP BY name HAVING failures > 0
        ORDER BY failures DESC, name LIMIT ?
        """,
        [*_range(domain, win), _top(limit)],
    ).fetchall()
    items = [
        {"name": name, "failures": int(n), "finished": int(done), "failure_rate": n / done if done else None,
         "last_failure_at": last.isoformat() if last else None}
        for name, n, done, last in rows
    ]  # fmt: skip
    return {"items": items}


def failures_by_cause(cur: Cursor, domain: str, win: Window, limit: int = 50) -> dict[str, Any]:
    """Failed attempts grouped by outcome, exit code and error (its first 200 characters).
    `status <> 'succeeded'` is redundant but DuckDB pushes it into the scan (an IN list it uses
    for zone maps only), so job ids and errors are read for the few failures, not every run."""
    failures = ", ".join(f"'{s}'" for s in FAILURES)
    rows = cur.execute(
        f"""
        SELECT status, exit_code, left(error, 200) AS err, count(*) AS n, count(DISTINCT job_id),
               max(finished_at), arg_max(job_id, finished_at)
        FROM runs WHERE {_IN_RANGE} AND status <> 'succeeded' AND status IN ({failures})
        GROUP BY ALL ORDER BY n DESC, status, exit_code NULLS LAST, err NULLS LAST LIMIT ?
        """,
        [*_range(domain, win), _top(limit)],
    ).fetchall()
    items = [
        {"status": status, "exit_code": code, "error": err, "attempts": int(n), "jobs": int(jobs),
         "last_at": last.isoformat() if last else None, "example_job_id": example}
        for status, code, err, n, jobs, last, example in rows
    ]  # fmt: skip
    return {"items": items}


def utilisation(cur: Cursor, domain: str, win: Window, now: datetime) -> dict[str, Any]:
    """Busy slots per bucket: attempt time held on workers (dispatch → end, or `now` while it
    runs) over the bucket's length; capacity is the slots of workers registered by then and
    not gone (offline or stopped) before it began.

    Exact without expanding runs into buckets: with F(t) the slot time held before t,
    F(t) = t·starts(<t) - Σstarts(<t) - t·ends(<t) + Σends(<t), so one scan grouping starts
    and ends by bucket gives every bucket's held time as F(hi) - F(lo)."""
    span = win.until_us - win.since_us
    end = min(_us(now), win.until_us) - win.since_us
    s, step, n = win.since_us, win.step_us, win.buckets
    rows = cur.execute(
        f"""
        WITH r AS MATERIALIZED (
            SELECT worker_id, greatest(epoch_us(dispatched_at) - {s}, 0) AS s,
                   least(coalesce(epoch_us(finished_at) - {s}, {end}), {span}) AS e
            FROM runs WHERE domain = ? AND dispatched_at < ?
              AND (finished_at IS NULL OR finished_at >= ?)
              AND (finished_at IS NOT NULL OR status IN ('dispatched', 'running'))
        )
        SELECT 's', s // {step} AS b, NULL, count(*), sum(s) FROM r GROUP BY b
        UNION ALL SELECT 'e', e // {step} AS b, NULL, count(*), sum(e) FROM r WHERE e < {span} GROUP BY b
        UNION ALL SELECT 'w', NULL, worker_id, count(*), sum(greatest(e - s, 0)) FROM r GROUP BY worker_id
        """,
        [domain, win.until, win.since],
    ).fetchall()
    starts, ends = [0] * n, [0] * n
    start_sum, end_sum = [0] * n, [0] * n
    per_worker: dict[str, int] = {}
    for kind, b, worker, count, total in rows:
        if kind == "s" and b < n:
            starts[b], start_sum[b] = int(count), int(total)
        elif kind == "e" and b < n:
            ends[b], end_sum[b] = int(count), int(total)
        elif kind == "w":
            per_worker[worker] = int(total)
    workers = cur.execute(
        "SELECT id, max_concurrency, epoch_us(registered_at), status, epoch_us(updated_at) FROM workers "
        "WHERE domain = ?",
        [domain],
    ).fetchall()
    # Capacity by a difference array over buckets: a worker counts from the bucket it registered
    # in; one that is no longer active, up to the bucket it went away in.
    change = [0] * (n + 1)
    for _, slots, registered, status, updated in workers:
        first = max(0, (registered - s) // step)
        last = n if status == "active" else min(n, (updated - s) // step + 1)
        if first < last:
            change[first] += int(slots)
            change[last] -= int(slots)
    buckets = []
    capacity = n_s = sum_s = n_e = sum_e = 0
    held_before = 0
    for b in range(n):
        capacity += change[b]
        n_s, sum_s, n_e, sum_e = n_s + starts[b], sum_s + start_sum[b], n_e + ends[b], sum_e + end_sum[b]
        hi = min((b + 1) * step, span)
        held_by = hi * n_s - sum_s - hi * n_e + sum_e
        busy = (held_by - held_before) / (hi - b * step)
        held_before = held_by
        buckets.append(
            {"start": win.start(b), "busy_slots": busy, "capacity": capacity,
             "utilisation": busy / capacity if capacity else None}
        )  # fmt: skip
    slots_of = {w: int(k) for w, k, *_ in workers}
    by_worker = [
        {"worker_id": w, "busy_slots": held / span, "max_concurrency": slots_of.get(w),
         "utilisation": held / span / slots_of[w] if slots_of.get(w) else None}
        for w, held in sorted(per_worker.items())
    ]  # fmt: skip
    return {"interval_s": win.step_s, "buckets": buckets, "workers": by_worker}


def schedule_lateness(cur: Cursor, domain: str, win: Window, limit: int = 100) -> dict[str, Any]:
    """Per schedule: ticks fired, skipped, queued and missed, and how late the fired ones came."""
    rows = cur.execute(
        """
        SELECT r.schedule_id, any_value(s.name),
               coalesce(sum(r.count) FILTER (WHERE r.outcome = 'fired'), 0),
               coalesce(sum(r.count) FILTER (WHERE r.outcome = 'skipped'), 0),
               coalesce(sum(r.count) FILTER (WHERE r.outcome = 'queued'), 0),
               coalesce(sum(r.count) FILTER (WHERE r.outcome = 'missed'), 0) AS missed,
               quantile_cont(r.lateness_s, [0.5, 0.9, 0.99]), max(r.lateness_s)
        FROM schedule_runs r LEFT JOIN schedules s ON s.domain = r.domain AND s.id = r.schedule_id
        WHERE r.domain = ? AND r.recorded_at >= ? AND r.recorded_at < ?
        GROUP BY r.schedule_id ORDER BY missed DESC, r.schedule_id LIMIT ?
        """,
        [*_range(domain, win), _top(limit)],
    ).fetchall()
    items = [
        {"schedule_id": sid, "name": name, "fired": int(f), "skipped": int(sk), "queued": int(qd),
         "missed": int(m), "lateness_p50_s": _q(q, 0), "lateness_p90_s": _q(q, 1),
         "lateness_p99_s": _q(q, 2), "lateness_max_s": top}
        for sid, name, f, sk, qd, m, q, top in rows
    ]  # fmt: skip
    return {"items": items}


def _plain(row: tuple[Any, ...]) -> list[Any]:
    return [v.isoformat() if isinstance(v, datetime) else v for v in row]
