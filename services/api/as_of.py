"""Time travel: an aggregate's state as of a stream sequence, folded from its events.

The read model's tables only know the present; the log knows every past. `?as_of_seq=N` takes
the aggregate's own events up to N (only the caller's domain's) and folds them with the same
pure `evolve` the projector uses, then shapes the answer exactly like the live route's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any, TypeVar

import duckdb
from fastapi import HTTPException, Query, Request
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api

from events import subjects
from events.codec import decode_event, encode
from events.job import JobState, evolve
from events.schedule import ScheduleState, evolve_schedule, planned_at
from events.store import EventStore, stream_seq
from events.worker import WorkerState, evolve_worker
from projections.mapping import full
from services.api.deps import projector, store

S = TypeVar("S")
Cursor = duckdb.DuckDBPyConnection

FETCH_BATCH = 1000
FETCH_TIMEOUT_S = 5.0
CONSUMER_INACTIVE_S = 30.0

AS_OF_SEQ = Query(
    default=None,
    ge=1,
    description="the state as of this stream sequence, folded from the log (404 if it did not exist yet)",
)


# The aggregate's rows by the ART index on `events (aggregate_id)` (schema.INDEXES):
# DuckDB takes an index scan only for a lone equality on the indexed column, so the other
# conditions are applied to its hits, after the MATERIALIZED CTE that keeps them out of the scan.
# An aggregate with more rows than DuckDB's index_scan_max_count (2,048) is scanned instead.
STORED_EVENTS = (
    "WITH hits AS MATERIALIZED (SELECT seq, domain, aggregate, subject, data FROM events "
    "WHERE aggregate_id = ?) "
    "SELECT seq, subject, data FROM hits WHERE domain = ? AND aggregate = ? AND seq <= ? ORDER BY seq"
)


def stored_events(
    cur: Cursor, domain: str, aggregate: str, aggregate_id: str, as_of: int
) -> tuple[list[tuple[int, str, bytes]], int]:
    """The aggregate's events up to `as_of` as the read model's `events` table holds them (each
    payload as stored in the log, with its stream sequence), and the sequence the table is
    complete to. One snapshot: both read in one transaction."""
    cur.execute("BEGIN TRANSACTION")
    try:
        row = cur.execute("SELECT seq FROM checkpoint WHERE name = 'events'").fetchone()
        rows = cur.execute(STORED_EVENTS, [aggregate_id, domain, aggregate, as_of]).fetchall()
    finally:
        cur.execute("COMMIT")
    return [(seq, subject, data.encode()) for seq, subject, data in rows], int(row[0]) if row else 0


async def fold_as_of(
    es: EventStore, cursor: Callable[[], Cursor], aggregate: str, domain: str, aggregate_id: str,
    evolve_fn: Callable[[S | None, Any], S | None], as_of: int,
) -> tuple[S | None, int]:  # fmt: skip
    """The state after the aggregate's events with sequence <= `as_of`, and the last one's sequence.

    The part of the log the read model has applied is read from its `events` table (each event's
    payload as the log stores it, with its sequence); only the tail past the table's checkpoint
    is read from JetStream, by a consumer on the aggregate's subjects. Reading it all from
    JetStream was measured slower: by subject, the server passes over every block the
    aggregate's events are spread over (45-70 ms for 100 events in a log of 200,000); by
    sequence, 100 direct gets in flight cost more than the table's read."""

    def read() -> tuple[list[tuple[int, str, bytes]], int]:
        cur = cursor()
        try:
            return stored_events(cur, domain, aggregate, aggregate_id, as_of)
        finally:
            cur.close()

    filter_subject = subjects.aggregate_all(domain, aggregate, aggregate_id)
    if es.via_proxy:  # a domain-token login reads through the proxy, by subject only
        events = [
            (e.seq, e.subject, encode(e.event)) for e in await es.read(filter_subject) if e.seq <= as_of
        ]
    else:
        events, complete_to = await asyncio.to_thread(read)
        if as_of > complete_to:
            await check_seq(es, as_of)
            events += [e for e in await _tail(es, filter_subject, complete_to) if e[0] <= as_of]
    state: S | None = None
    last = 0
    for seq, subject, data in events:
        state, last = evolve_fn(state, decode_event(subject, data)), seq
    return state, last


async def _tail(store: EventStore, filter_subject: str, after: int) -> list[tuple[int, str, bytes]]:
    """The events on the subjects after sequence `after`, in order, as (sequence, subject, payload)."""
    config = api.ConsumerConfig(
        ack_policy=api.AckPolicy.NONE, deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE,
        opt_start_seq=after + 1, filter_subject=filter_subject, inactive_threshold=CONSUMER_INACTIVE_S,
        mem_storage=True, num_replicas=1,
    )  # fmt: skip
    info = await store.js.add_consumer(store.stream, config=config)
    out: list[tuple[int, str, bytes]] = []
    try:
        left = info.num_pending or 0  # what matched when it was made: all an as-of read needs
        if not left:
            return out
        sub = await store.js.pull_subscribe_bind(durable=info.name, stream=store.stream)
        try:
            while left > 0:
                try:
                    msgs = await sub.fetch(min(left, FETCH_BATCH), timeout=FETCH_TIMEOUT_S)
                except NatsTimeout:
                    break  # deleted meanwhile (stream limits): what was there is what we fold
                left -= len(msgs)
                out += [(stream_seq(msg), msg.subject, msg.data) for msg in msgs]
        finally:
            await sub.unsubscribe()
    finally:
        # Gone already, or the connection is: then it expires on its own (inactive_threshold).
        with contextlib.suppress(Exception):
            await store.js.delete_consumer(store.stream, info.name)
    return out


async def check_seq(store: EventStore, as_of: int) -> None:
    """A sequence past the end of the log names a future the log cannot answer: 422."""
    last = await store.last_seq()
    if as_of > last:
        raise HTTPException(422, detail=f"as_of_seq {as_of} is past the last sequence of the log ({last})")


def job_view(state: JobState, seq: int) -> dict[str, Any]:
    """Same shape as `queries.get_job`."""
    out: dict[str, Any] = full(state)
    out["last_seq"] = seq
    return out


def schedule_view(state: ScheduleState, seq: int) -> dict[str, Any]:
    """Same shape as `schedule_queries.get_schedule` (status and next fire time as the row has them)."""
    tick = None if state.paused or state.deleted else state.next_tick()
    out: dict[str, Any] = full(state)
    out["status"] = state.status
    out["next_fire_at"] = planned_at(state, tick).isoformat() if tick else None
    out["last_seq"] = seq
    out["waiting"] = [full(w) for w in state.waiting]
    return out


def worker_view(state: WorkerState) -> dict[str, Any]:
    """Same keys as `queries.get_worker`. Heartbeats and running jobs are not events of the
    worker, so the past cannot say them: they are null (active_jobs too)."""
    out: dict[str, Any] = full(state)
    out.update(last_heartbeat_at=None, running=None, draining=None, active_jobs=None)
    return out


async def job_as_of(request: Request, domain: str, job_id: str, as_of: int) -> dict[str, Any]:
    state, seq = await fold_as_of(
        store(request), projector(request).cursor, "job", domain, job_id, evolve, as_of
    )
    if state is None:
        raise HTTPException(404, detail=f"job {job_id} did not exist at sequence {as_of}")
    return job_view(state, seq)


async def schedule_as_of(request: Request, domain: str, schedule_id: str, as_of: int) -> dict[str, Any]:
    state, seq = await fold_as_of(
        store(request), projector(request).cursor, "schedule", domain, schedule_id, evolve_schedule, as_of
    )
    if state is None:
        raise HTTPException(404, detail=f"schedule {schedule_id} did not exist at sequence {as_of}")
    return schedule_view(state, seq)


async def worker_as_of(request: Request, domain: str, worker_id: str, as_of: int) -> dict[str, Any]:
    state, _ = await fold_as_of(
        store(request), projector(request).cursor, "worker", domain, worker_id, evolve_worker, as_of
    )
    if state is None:
        raise HTTPException(404, detail=f"worker {worker_id} did not exist at sequence {as_of}")
    return worker_view(state)
