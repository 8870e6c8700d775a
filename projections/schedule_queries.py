"""Read-model queries about schedules and their tick history."""

from __future__ import annotations

from typing import Any

import msgspec

from events.schedule import ScheduleState
from projections.mapping import full
from projections.queries import Cursor
from projections.where import Where

STATUSES = ("active", "paused", "ended", "invalid", "deleted")


def _schedule(row: tuple[Any, ...]) -> dict[str, Any]:
    state = msgspec.json.decode(row[0], type=ScheduleState)
    out: dict[str, Any] = full(state)
    out["status"] = row[1]
    out["next_fire_at"] = row[2].isoformat() if row[2] is not None else None
    out["last_seq"] = row[3]
    out["waiting"] = [full(w) for w in state.waiting]
    return out


_SQL = "SELECT state, status, next_fire_at, last_seq FROM schedules"


def get_schedule(cur: Cursor, domain: str, schedule_id: str) -> dict[str, Any] | None:
    row = cur.execute(_SQL + " WHERE domain = ? AND id = ?", [domain, schedule_id]).fetchone()
    return _schedule(row) if row else None


def get_state(cur: Cursor, domain: str, schedule_id: str) -> ScheduleState | None:
    row = cur.execute(
        "SELECT state FROM schedules WHERE domain = ? AND id = ?", [domain, schedule_id]
    ).fetchone()
    return msgspec.json.decode(row[0], type=ScheduleState) if row else None


def find_by_name(cur: Cursor, domain: str, name: str) -> dict[str, Any] | None:
    """The live (not deleted) schedule with this name, if any."""
    row = cur.execute(
        _SQL + " WHERE domain = ? AND name = ? AND status <> 'deleted' ORDER BY created_at LIMIT 1",
        [domain, name],
    ).fetchone()
    return _schedule(row) if row else None


def list_schedules(
    cur: Cursor, domain: str, *, status: str | None = None, name: str | None = None, label: str | None = None
) -> list[dict[str, Any]]:
    """By name; deleted schedules only when asked for with status=deleted."""
    where = Where.in_domain(domain)
    if status is not None:
        where.one_of("status", status, STATUSES)
    else:
        where.add("status <> 'deleted'")
    where.equals("name", name)
    where.has("labels", label)
    rows = cur.execute(_SQL + f" WHERE {where.sql} ORDER BY name, id", where.params).fetchall()
    return [_schedule(r) for r in rows]


def schedule_runs(
    cur: Cursor, domain: str, schedule_id: str, *, limit: int = 50, before: int | None = None
) -> tuple[list[dict[str, Any]], int | None]:
    """Tick records newest first, each with its job's current status; `before` pages back by sequence."""
    where = ["r.domain = ?", "r.schedule_id = ?"]
    params: list[Any] = [domain, schedule_id]
    if before is not None:
        where.append("r.seq < ?")
        params.append(before)
    rows = cur.execute(
        "SELECT r.seq, r.outcome, r.tick, r.planned_at, r.recorded_at, r.lateness_s, r.job_id, r.reason, "
        "r.count, j.status FROM schedule_runs r LEFT JOIN jobs j ON j.domain = r.domain AND j.id = r.job_id "
        f"WHERE {' AND '.join(where)} ORDER BY r.seq DESC LIMIT ?",
        [*params, limit + 1],
    ).fetchall()
    items = [
        {
            "seq": r[0],
            "outcome": r[1],
            "tick": _iso(r[2]),
            "planned_at": _iso(r[3]),
            "fired_at": _iso(r[4]) if r[1] == "fired" else None,
            "recorded_at": _iso(r[4]),
            "lateness_s": r[5],
            "job_id": r[6],
            "reason": r[7],
            "count": r[8],
            "job_status": r[9],
        }
        for r in rows[:limit]
    ]
    return items, (rows[limit - 1][0] if len(rows) > limit else None)


def tick_counts(cur: Cursor) -> dict[tuple[str, str], int]:
    """Ticks recorded per (domain, outcome), for metrics; a `missed` row counts all its ticks."""
    rows = cur.execute("SELECT domain, outcome, sum(count) FROM schedule_runs GROUP BY ALL").fetchall()
    return {(d, o): int(n) for d, o, n in rows}


def due_count(cur: Cursor) -> dict[str, int]:
    """Active schedules whose next fire time has passed: due now, or overdue if no scheduler runs."""
    rows = cur.execute(
        "SELECT domain, count(*) FROM schedules "
        "WHERE status = 'active' AND next_fire_at <= now() GROUP BY ALL"
    ).fetchall()
    return {d: int(n) for d, n in rows}


def lateness_buckets(cur: Cursor, buckets: list[float]) -> tuple[list[int], float, int]:
    bounds = ", ".join(f"count(*) FILTER (WHERE lateness_s <= {float(b)!r})" for b in buckets)
    row = cur.execute(
        f"SELECT {bounds + ',' if bounds else ''} coalesce(sum(lateness_s), 0), count(*) "
        "FROM schedule_runs WHERE lateness_s IS NOT NULL"
    ).fetchone()
    assert row is not None
    n = len(buckets)
    return [int(c) for c in row[:n]], float(row[n]), int(row[n + 1])


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
