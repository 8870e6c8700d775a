"""Counters the services keep in memory, counted again from the read model for /metrics.

The dispatcher counts its dispatches and the scheduler its fired, skipped and missed ticks, but
only in memory, per process, lost on restart. Each of those is an event in the log, so the API
counts the events instead: every replica answers the same, and a restart loses nothing.
"""

from __future__ import annotations

import duckdb

Cursor = duckdb.DuckDBPyConnection
PerDomain = dict[str, int]

# A skip for overlap: v2 `skipped` kinds overlap and buffer_full, whose `reason` starts so
# (events/schedule.py `_SKIP_PREFIX`; the read model keeps the reason, not the kind).
# How the worker's executors begin the error of an attempt they could not start
# (services/worker/executors): the process never ran, so there is no exit code either.
LAUNCH_ERRORS = ("could not start ", "cwd ", "cannot load callable ", "this worker cannot run executor ")

_SQL: dict[str, str] = {
    # One attempt row per dispatch, lost (requeued) ones included.
    "jobs_dispatched": "SELECT domain, count(*) FROM attempts GROUP BY ALL",
    "runs_emitted": "SELECT domain, count(*) FROM schedule_runs WHERE outcome = 'fired' GROUP BY ALL",
    "runs_skipped_overlap": "SELECT domain, count(*) FROM schedule_runs "
    "WHERE outcome = 'skipped' AND starts_with(reason, 'overlap: ') GROUP BY ALL",
    "schedule_missed_ticks": "SELECT domain, sum(count) FROM schedule_runs "
    "WHERE outcome = 'missed' GROUP BY ALL",
    # An attempt of a run the schedule emitted that the worker could not start at all.
    "runs_failed_launch": "SELECT a.domain, count(*) FROM attempts a JOIN schedule_runs r "
    "ON r.domain = a.domain AND r.job_id = a.job_id AND r.outcome = 'fired' "
    "WHERE a.status = 'failed' AND a.exit_code IS NULL AND ("
    + " OR ".join(f"starts_with(a.error, '{p}')" for p in LAUNCH_ERRORS)
    + ") GROUP BY ALL",
}
NAMES = tuple(_SQL)


def service_counts(cur: Cursor) -> dict[str, PerDomain]:
    """Each counter of `NAMES`, per domain (domains without any are absent)."""
    return {name: {d: int(n) for d, n in cur.execute(sql).fetchall()} for name, sql in _SQL.items()}
