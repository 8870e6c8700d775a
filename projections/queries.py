"""Read-model queries for the API and CLI; each takes a cursor and returns plain JSON-ready data."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import duckdb
import msgspec

from events.job import JobState, JobStatus
from events.worker import WorkerState
from projections.mapping import full
from projections.where import InvalidQuery as InvalidQuery  # re-exported: callers catch it from here
from projections.where import Where

Cursor = duckdb.DuckDBPyConnection


def _job(state_json: str, seq: int) -> dict[str, Any]:
    out: dict[str, Any] = full(msgspec.json.decode(state_json, type=JobState))
    out["last_seq"] = seq
    return out


def get_job(cur: Cursor, domain: str, job_id: str) -> dict[str, Any] | None:
    row = cur.execute(
        "SELECT state, last_seq FROM jobs WHERE domain = ? AND id = ?", [domain, job_id]
    ).fetchone()
    return _job(row[0], row[1]) if row else None


def _encode_cursor(us: int, job_id: str) -> str:
    return base64.urlsafe_b64encode(f"{us}:{job_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        us, job_id = text.split(":", 1)
        return int(us), job_id
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise InvalidQuery(f"cursor {cursor!r} is not one this API returned") from exc


@dataclass(frozen=True)
class JobFilter:
    """Which jobs a list, a count or a bulk action is about; every field that is None matches all.
    `status` and `not_status` are comma-separated statuses; `label` is (key, value); `since`
    (inclusive) and `until` (exclusive) bound the submission time."""

    status: str | None = None
    not_status: str | None = None
    name: str | None = None
    tag: str | None = None
    worker: str | None = None
    label: tuple[str, str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def where(self, domain: str) -> Where:
        where = Where.in_domain(domain)
        where.between("submitted_at", self.since, self.until)
        statuses = [s.value for s in JobStatus]
        if self.status is not None:
            where.one_of("status", self.status, statuses)
        if self.not_status is not None:
            excluded = Where()
            excluded.one_of("status", self.not_status, statuses)
            where.add(f"NOT ({excluded.sql})", *excluded.params)
        where.equals("name", self.name)
        where.has("tags", self.tag)
        where.equals("worker_id", self.worker)
        where.has("labels", None if self.label is None else f"{self.label[0]}={self.label[1]}")
        return where


def list_jobs(
    cur: Cursor,
    domain: str,
    *,
    status: str | None = None,
    name: str | None = None,
    tag: str | None = None,
    worker: str | None = None,
    label: tuple[str, str] | None = None,
    limit: int = 50,
    cursor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    not_status: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """Newest first (submission time, then id); `cursor` continues after the last item of a page."""
    where = JobFilter(status, not_status, name, tag, worker, label, since, until).where(domain)
    if cursor is not None:
        us, after_id = _decode_cursor(cursor)
        where.add("(epoch_us(submitted_at) < ? OR (epoch_us(submitted_at) = ? AND id < ?))", us, us, after_id)
    rows = cur.execute(
        f"SELECT state, last_seq, epoch_us(submitted_at), id FROM jobs WHERE {where.sql} "
        "ORDER BY submitted_at DESC, id DESC LIMIT ?",
        [*where.params, limit + 1],
    ).fetchall()
    items = [_job(r[0], r[1]) for r in rows[:limit]]
    next_cursor = _encode_cursor(rows[limit - 1][2], rows[limit - 1][3]) if len(rows) > limit else None
    return items, next_cursor


def matching_jobs(cur: Cursor, domain: str, selection: JobFilter, limit: int) -> tuple[int, list[str]]:
    """How many jobs match, and the ids of the newest `limit` of them (for a bulk action)."""
    where = selection.where(domain)
    total = cur.execute(f"SELECT count(*) FROM jobs WHERE {where.sql}", where.params).fetchone()
    rows = cur.execute(
        f"SELECT id FROM jobs WHERE {where.sql} ORDER BY submitted_at DESC, id DESC LIMIT ?",
        [*where.params, limit],
    ).fetchall()
    return int(total[0]) if total else 0, [r[0] for r in rows]


def job_statuses(cur: Cursor, domain: str, ids: list[str]) -> dict[str, str]:
    """The status of each of these jobs that exists, in one scan."""
    rows = cur.execute(
        "SELECT id, status FROM jobs WHERE domain = ? AND id IN (SELECT unnest(?::VARCHAR[]))", [domain, ids]
    ).fetchall()
    return {i: s for i, s in rows}


COUNT_GROUPS = {"status": "status", "name": "name", "worker": "worker_id", "tag": "unnest(tags)"}


def count_jobs(
    cur: Cursor,
    domain: str,
    group_by: str | None = None,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """How many jobs, in total or per status, name, worker or tag (a job counts once per tag)."""
    where = Where.in_domain(domain)
    where.between("submitted_at", since, until)
    total = cur.execute(f"SELECT count(*) FROM jobs WHERE {where.sql}", where.params).fetchone()
    out: dict[str, Any] = {"total": int(total[0]) if total else 0}
    if group_by is None:
        return out
    if group_by not in COUNT_GROUPS:
        raise InvalidQuery(f"group_by must be one of {', '.join(COUNT_GROUPS)}")
    rows = cur.execute(
        f"SELECT {COUNT_GROUPS[group_by]} AS key, count(*) AS n FROM jobs WHERE {where.sql} "
        "GROUP BY key ORDER BY n DESC, key NULLS LAST",
        where.params,
    ).fetchall()
    out["group_by"] = group_by
    out["counts"] = [{group_by: key, "count": int(n)} for key, n in rows]
    return out


def job_events(cur: Cursor, domain: str, job_id: str) -> list[dict[str, Any]]:
    rows = cur.execute(
        "SELECT seq, subject, data FROM events WHERE domain = ? AND aggregate = 'job' AND aggregate_id = ? "
        "ORDER BY seq",
        [domain, job_id],
    ).fetchall()
    return [{"seq": seq, "subject": subject, **msgspec.json.decode(data)} for seq, subject, data in rows]


_WORKER_SQL = """
SELECT w.state, l.last_heartbeat_at, l.running, l.draining,
       (SELECT count(*) FROM jobs j WHERE j.domain = w.domain AND j.worker_id = w.id
          AND j.status IN ('dispatched', 'running')) AS active_jobs
FROM workers w LEFT JOIN worker_liveness l USING (domain, id)
"""


def _worker(row: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = full(msgspec.json.decode(row[0], type=WorkerState))
    out["last_heartbeat_at"] = row[1].isoformat() if row[1] is not None else None
    out["running"] = list(row[2] or [])
    out["draining"] = bool(row[3])
    out["active_jobs"] = int(row[4])
    return out


def list_workers(cur: Cursor, domain: str) -> list[dict[str, Any]]:
    rows = cur.execute(_WORKER_SQL + " WHERE w.domain = ? ORDER BY w.id", [domain]).fetchall()
    return [_worker(r) for r in rows]


def get_worker(cur: Cursor, domain: str, worker_id: str) -> dict[str, Any] | None:
    row = cur.execute(_WORKER_SQL + " WHERE w.domain = ? AND w.id = ?", [domain, worker_id]).fetchone()
    return _worker(row) if row else None


def status_counts(cur: Cursor) -> dict[tuple[str, str], int]:
    rows = cur.execute("SELECT domain, status, count(*) FROM jobs GROUP BY ALL").fetchall()
    return {(d, s): int(n) for d, s, n in rows}


def dispatch_latency_buckets(cur: Cursor, buckets: Sequence[float]) -> tuple[list[int], float, int]:
    """Cumulative counts of queue→dispatch time per attempt at each bucket bound, their sum, and total."""
    bounds = ", ".join(f"count(*) FILTER (WHERE latency <= {float(b)!r})" for b in buckets)
    sql = (
        f"SELECT {bounds + ',' if bounds else ''} coalesce(sum(latency), 0), count(*) FROM ("
        "SELECT greatest(epoch_us(dispatched_at) - epoch_us(queued_at), 0) / 1e6 AS latency FROM attempts)"
    )
    row = cur.execute(sql).fetchone()
    assert row is not None
    n = len(buckets)
    return [int(c) for c in row[:n]], float(row[n]), int(row[n + 1])
