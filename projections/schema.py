"""The read model's tables. Every table but `worker_liveness` is a pure function of the log."""

from __future__ import annotations

import duckdb
import pyarrow as pa

TS = pa.timestamp("us", tz="UTC")

JOBS = pa.schema(
    [
        ("domain", pa.string()),
        ("id", pa.string()),
        ("name", pa.string()),
        ("status", pa.string()),
        ("executor", pa.string()),
        ("priority", pa.int64()),
        ("user", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("labels", pa.list_(pa.string())),
        ("worker_id", pa.string()),
        ("attempt", pa.int64()),
        ("retries", pa.int64()),
        ("requeues", pa.int64()),
        ("pending_reason", pa.string()),
        ("cancel_requested", pa.bool_()),
        ("submitted_at", TS),
        ("dispatched_at", TS),
        ("started_at", TS),
        ("finished_at", TS),
        ("updated_at", TS),
        ("exit_code", pa.int64()),
        ("error", pa.string()),
        ("retry_of", pa.string()),
        ("last_seq", pa.int64()),
        ("state", pa.string()),
    ]
)

ATTEMPTS = pa.schema(
    [
        ("domain", pa.string()),
        ("job_id", pa.string()),
        ("n", pa.int64()),
        ("worker_id", pa.string()),
        ("status", pa.string()),
        ("queued_at", TS),
        ("dispatched_at", TS),
        ("started_at", TS),
        ("finished_at", TS),
        ("exit_code", pa.int64()),
        ("error", pa.string()),
    ]
)

# One row per attempt, flat, for analytics: what ran where, how long it waited and ran (seconds).
RUNS = pa.schema(
    [
        ("domain", pa.string()),
        ("job_id", pa.string()),
        ("name", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("labels", pa.list_(pa.string())),
        ("user", pa.string()),
        ("worker_id", pa.string()),
        ("executor", pa.string()),
        ("attempt", pa.int64()),
        ("status", pa.string()),
        ("exit_code", pa.int64()),
        ("error", pa.string()),
        ("queued_at", TS),
        ("dispatched_at", TS),
        ("started_at", TS),
        ("finished_at", TS),
        ("queue_wait_s", pa.float64()),
        ("start_delay_s", pa.float64()),
        ("duration_s", pa.float64()),
        ("schedule_id", pa.string()),
        ("tick", TS),
        ("lateness_s", pa.float64()),
        ("template", pa.string()),
    ]
)

WORKERS = pa.schema(
    [
        ("domain", pa.string()),
        ("id", pa.string()),
        ("status", pa.string()),
        ("tags", pa.list_(pa.string())),
        ("allowed_users", pa.list_(pa.string())),
        ("executors", pa.list_(pa.string())),
        ("max_concurrency", pa.int64()),
        ("hostname", pa.string()),
        ("registered_at", TS),
        ("updated_at", TS),
        ("reason", pa.string()),
        ("admin_state", pa.string()),  # active | draining | disabled: what an operator set
        ("last_seq", pa.int64()),
        ("state", pa.string()),
    ]
)

EVENTS = pa.schema(
    [
        ("seq", pa.int64()),
        ("domain", pa.string()),
        ("aggregate", pa.string()),
        ("aggregate_id", pa.string()),
        ("type", pa.string()),
        ("subject", pa.string()),
        ("at", TS),
        ("actor", pa.string()),
        ("data", pa.string()),
    ]
)

SCHEDULES = pa.schema(
    [
        ("domain", pa.string()),
        ("id", pa.string()),
        ("name", pa.string()),
        ("status", pa.string()),
        ("cron", pa.string()),
        ("interval_s", pa.float64()),
        ("timezone", pa.string()),
        ("overlap_policy", pa.string()),
        ("catchup_policy", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("next_fire_at", TS),
        ("last_tick", TS),
        ("last_fired_at", TS),
        ("last_job_id", pa.string()),
        ("fired", pa.int64()),
        ("skipped", pa.int64()),
        ("missed", pa.int64()),
        ("waiting", pa.int64()),
        ("created_at", TS),
        ("updated_at", TS),
        ("last_seq", pa.int64()),
        ("state", pa.string()),
    ]
)

# One row per record a schedule gets for a tick: fired, skipped, queued or missed.
SCHEDULE_RUNS = pa.schema(
    [
        ("seq", pa.int64()),
        ("domain", pa.string()),
        ("schedule_id", pa.string()),
        ("outcome", pa.string()),
        ("tick", TS),
        ("planned_at", TS),
        ("recorded_at", TS),
        ("lateness_s", pa.float64()),
        ("job_id", pa.string()),
        ("reason", pa.string()),
        ("count", pa.int64()),
    ]
)

TEMPLATES = pa.schema(
    [
        ("domain", pa.string()),
        ("name", pa.string()),
        ("status", pa.string()),
        ("latest_version", pa.int64()),
        ("updated_at", TS),
        ("last_seq", pa.int64()),
        ("state", pa.string()),
    ]
)

DOMAINS = pa.schema(
    [
        ("name", pa.string()),
        ("status", pa.string()),
        ("description", pa.string()),
        ("tokens", pa.int64()),
        ("created_at", TS),
        ("updated_at", TS),
        ("last_seq", pa.int64()),
        ("state", pa.string()),
    ]
)

LIVENESS = pa.schema(
    [
        ("domain", pa.string()),
        ("id", pa.string()),
        ("last_heartbeat_at", TS),
        ("running", pa.list_(pa.string())),
        ("draining", pa.bool_()),
    ]
)

_DUCK = {
    pa.string(): "VARCHAR",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE",
    pa.bool_(): "BOOLEAN",
    TS: "TIMESTAMPTZ",
    pa.list_(pa.string()): "VARCHAR[]",
}

# The tables that replaying the log must reproduce exactly, with the columns that order them.
LOG_TABLES: dict[str, tuple[pa.Schema, str]] = {
    "jobs": (JOBS, "domain, id"),
    "attempts": (ATTEMPTS, "domain, job_id, n"),
    "runs": (RUNS, "domain, job_id, attempt"),
    "workers": (WORKERS, "domain, id"),
    "events": (EVENTS, "seq"),
    "schedules": (SCHEDULES, "domain, id"),
    "schedule_runs": (SCHEDULE_RUNS, "seq"),
    "domains": (DOMAINS, "name"),
    "templates": (TEMPLATES, "domain, name"),
}
ALL_TABLES: dict[str, pa.Schema] = {name: s for name, (s, _) in LOG_TABLES.items()} | {
    "worker_liveness": LIVENESS
}


# Bumped whenever a table is added or changed, so an older file is rebuilt from the log.
SCHEMA_VERSION = 6

# An index changes no table's layout and no row, so `ensure` adds a missing one in place (well
# under a second on 1,000,000 events) rather than the file being rebuilt. events (aggregate_id):
# time travel's lookup of one aggregate's events, a point read instead of a scan of the log.
INDEXES = {"events_aggregate_id": "events (aggregate_id)"}


def _ddl(name: str, schema: pa.Schema) -> str:
    cols = ", ".join(f'"{f.name}" {_DUCK[f.type]}' for f in schema)
    return f"CREATE TABLE IF NOT EXISTS {name} ({cols})"


def ensure(con: duckdb.DuckDBPyConnection) -> None:
    """Create what is missing; a read model with another layout is rebuilt, never migrated."""
    con.execute("SET TimeZone = 'UTC'")
    for name, schema in ALL_TABLES.items():
        con.execute(_ddl(name, schema))
    con.execute("CREATE TABLE IF NOT EXISTS checkpoint (name VARCHAR PRIMARY KEY, seq BIGINT NOT NULL)")
    con.execute("INSERT OR IGNORE INTO checkpoint VALUES ('events', 0)")
    version = con.execute("SELECT seq FROM checkpoint WHERE name = 'schema'").fetchone()
    if version is None and checkpoint(con) == 0:
        con.execute("INSERT INTO checkpoint VALUES ('schema', ?)", [SCHEMA_VERSION])
    elif version is None or version[0] != SCHEMA_VERSION:
        found = version[0] if version else 1
        raise SchemaMismatch(f"read model has schema version {found}, expected {SCHEMA_VERSION}")
    for name, schema in ALL_TABLES.items():
        have = [row[0] for row in con.execute(f"DESCRIBE {name}").fetchall()]
        if have != schema.names:
            raise SchemaMismatch(f"table {name} has columns {have}, expected {schema.names}")
    for index, on in INDEXES.items():
        con.execute(f"CREATE INDEX IF NOT EXISTS {index} ON {on}")


class SchemaMismatch(RuntimeError):
    """The DuckDB file was written by another version: rebuild it from the log."""


def reset(con: duckdb.DuckDBPyConnection) -> None:
    """Drop every table so the log can be replayed from zero."""
    for name in [*ALL_TABLES, "checkpoint"]:
        con.execute(f"DROP TABLE IF EXISTS {name}")
    ensure(con)


def checkpoint(con: duckdb.DuckDBPyConnection) -> int:
    row = con.execute("SELECT seq FROM checkpoint WHERE name = 'events'").fetchone()
    return int(row[0]) if row else 0
