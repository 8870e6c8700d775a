"""The projector: follows EVENTS and HEARTBEATS and applies them to DuckDB in checkpointed batches.

Each batch is one transaction that also moves the checkpoint, so a crash at any point
leaves the read model at a batch boundary: a restart resumes after the checkpoint and
never applies an event twice or skips one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import msgspec
import pyarrow as pa
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext, api

from events.base import Event
from events.codec import DecodeError, decode_event, decode_heartbeat
from events.domain import AnyDomainEvent, DomainEvent, DomainState, TokenInfo, evolve_domain
from events.job import AnyJobEvent, JobEvent, JobState, Submitted, evolve
from events.schedule import AnyScheduleEvent, ScheduleEvent, ScheduleState, evolve_schedule
from events.streams import EVENTS_STREAM, FOLLOW_IDLE_HEARTBEAT_S, HEARTBEATS_STREAM
from events.subjects import HEARTBEATS_PREFIX
from events.template import AnyTemplateEvent, TemplateEvent, TemplateState, evolve_template
from events.worker import AnyWorkerEvent, Heartbeat, WorkerEvent, WorkerState, evolve_worker
from projections import mapping, schema

if TYPE_CHECKING:
    from projections.replay_beside import BuildBeside

log = logging.getLogger(__name__)

BATCH_MAX = 20_000
IDLE_WAIT_S = 1.0
RETRY_WAIT_S = 1.0
FOLLOW_PENDING_LIMIT = 2_000_000
Key = tuple[str, str]


@dataclass
class EventRows:
    """The events table's columns, filled as a batch folds: a few list appends per event instead
    of a dict per row; the subject's parts are split by DuckDB at insert (see `_insert_events`)."""

    seq: list[int] = field(default_factory=list)
    subject: list[str] = field(default_factory=list)
    at: list[datetime] = field(default_factory=list)
    actor: list[str] = field(default_factory=list)
    data: list[bytes] = field(default_factory=list)

    def add(self, seq: int, subject: str, event: Event, data: bytes) -> None:
        self.seq.append(seq)
        self.subject.append(subject)
        self.at.append(event.at)
        self.actor.append(event.actor)
        self.data.append(data)

    def extend(self, decoded: list[tuple[int, str, Any, bytes]]) -> None:
        """`add` for a whole batch, a column at a time (what the fold does: a comprehension per
        column costs a fraction of five appends per event)."""
        self.seq.extend([d[0] for d in decoded])
        self.subject.extend([d[1] for d in decoded])
        self.at.extend([d[2].at for d in decoded])
        self.actor.extend([d[2].actor for d in decoded])
        self.data.extend([d[3] for d in decoded])

    def __len__(self) -> int:
        return len(self.seq)

    def table(self) -> pa.Table:
        return pa.table(
            {
                "seq": pa.array(self.seq, pa.int64()),
                "subject": pa.array(self.subject, pa.string()),
                "at": pa.array(self.at, schema.TS),
                "actor": pa.array(self.actor, pa.string()),
                "data": pa.array(self.data, pa.binary()).cast(pa.string()),
            }
        )


@dataclass
class Batch:
    """What one transaction writes; built by pure folding, then written as Arrow tables."""

    last_seq: int
    jobs: dict[Key, tuple[JobState, int]] = field(default_factory=dict)
    workers: dict[Key, tuple[WorkerState, int]] = field(default_factory=dict)
    schedules: dict[Key, tuple[ScheduleState, int]] = field(default_factory=dict)
    domains: dict[str, tuple[DomainState, int]] = field(default_factory=dict)
    templates: dict[Key, tuple[TemplateState, int]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    events: EventRows = field(default_factory=EventRows)
    undecodable: int = 0


def _load_jobs(con: duckdb.DuckDBPyConnection, keys: set[Key]) -> dict[Key, JobState]:
    if not keys:
        return {}
    ids = pa.table({"domain": [k[0] for k in keys], "id": [k[1] for k in keys]})
    con.register("wanted_jobs", ids)
    try:
        rows = con.execute(
            "SELECT j.domain, j.id, j.state FROM jobs j JOIN wanted_jobs w USING (domain, id)"
        ).fetchall()
    finally:
        con.unregister("wanted_jobs")
    return {(d, i): msgspec.json.decode(s, type=JobState) for d, i, s in rows}


def _load_workers(con: duckdb.DuckDBPyConnection) -> dict[Key, WorkerState]:
    rows = con.execute("SELECT domain, id, state FROM workers").fetchall()
    return {(d, i): msgspec.json.decode(s, type=WorkerState) for d, i, s in rows}


ARROW_CHUNK_ROWS = 500


def _arrow(rows: list[dict[str, Any]], table_schema: pa.Schema) -> pa.Table:
    """An Arrow table built a chunk at a time: one from_pylist call holds the GIL throughout,
    50-80 ms for a 20,000-row batch here, while the API's event loop waits beside it."""
    chunks = [
        pa.RecordBatch.from_pylist(rows[i : i + ARROW_CHUNK_ROWS], schema=table_schema)
        for i in range(0, len(rows), ARROW_CHUNK_ROWS)
    ]
    return pa.Table.from_batches(chunks, schema=table_schema)


def _columns(rows: list[tuple[Any, ...]], table_schema: pa.Schema) -> pa.Table:
    """An Arrow table from tuple rows in the schema's column order, a column at a time: the
    same values as `_arrow` on dicts at a fraction of its cost, and no one call holds the GIL
    for long (a column of 20,000 values takes a few ms)."""
    if rows and len(rows[0]) != len(table_schema):
        raise ValueError(f"rows of {len(rows[0])} values for {len(table_schema)} columns")
    columns = zip(*rows, strict=True) if rows else ([] for _ in table_schema)
    arrays = [pa.array(col, f.type) for col, f in zip(columns, table_schema, strict=True)]
    return pa.Table.from_arrays(arrays, schema=table_schema)


def _load_schedules(con: duckdb.DuckDBPyConnection) -> dict[Key, ScheduleState]:
    rows = con.execute("SELECT domain, id, state FROM schedules").fetchall()
    return {(d, i): msgspec.json.decode(s, type=ScheduleState) for d, i, s in rows}


def _load_templates(con: duckdb.DuckDBPyConnection, keys: set[Key]) -> dict[Key, TemplateState]:
    out: dict[Key, TemplateState] = {}
    for domain, name in keys:
        row = con.execute(
            "SELECT state FROM templates WHERE domain = ? AND name = ?", [domain, name]
        ).fetchone()
        if row:
            out[(domain, name)] = msgspec.json.decode(row[0], type=TemplateState)
    return out


def _load_domains(con: duckdb.DuckDBPyConnection) -> dict[str, DomainState]:
    rows = con.execute("SELECT name, state FROM domains").fetchall()
    return {n: msgspec.json.decode(s, type=DomainState) for n, s in rows}


class Projector:
    def __init__(self, db_path: Path | str, nc: NATS, batch_max: int = BATCH_MAX) -> None:
        self.db_path = str(db_path)
        self.nc = nc
        self.batch_max = batch_max
        self.applied_seq = 0
        self.undecodable = 0
        self.batches = 0
        self._con: duckdb.DuckDBPyConnection | None = None
        self._js: JetStreamContext | None = None
        self._jobs: dict[Key, JobState] = {}
        self._workers: dict[Key, WorkerState] = {}
        self._schedules: dict[Key, ScheduleState] = {}
        # Domains and a token-id index, read by the API's auth on every request: replaced
        # whole (never mutated) after each batch, so readers on the event loop see either
        # the old or the new mapping.
        self.domains: dict[str, DomainState] = {}
        self.tokens: dict[str, tuple[str, TokenInfo]] = {}
        self._inbox: list[Msg] = []
        self._beats: dict[Key, Heartbeat] = {}
        self._wake = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._subs: list[Any] = []
        self._task: asyncio.Task[None] | None = None
        # Cancelling the loop does not stop a batch already running in its thread; stop() takes
        # this lock so it never closes the connection under a batch mid-write.
        self._apply_lock = threading.Lock()
        # Set while a read model of another schema version is served and the new one is built.
        self.building: BuildBeside | None = None

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        assert self._con is not None, "projector not started"
        return self._con

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A connection of its own for one reader thread; reads see committed batches only."""
        cur = self.con.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        return cur

    async def start(self) -> None:
        self._js = self.nc.jetstream()
        from projections.replay_beside import BuildBeside, stale_version

        old = await asyncio.to_thread(stale_version, self.db_path)
        if old is not None:
            # Another schema version: serve that file as it is while the new one is built beside it.
            self.building = BuildBeside(self, old)
            await self.building.start()
            return
        self._con = await asyncio.to_thread(self._open)
        await self._follow()

    async def _follow(self) -> None:
        """Follow the log from the checkpoint of the file `self._con` holds."""
        assert self._js is not None
        js = self._js
        last = (await js.stream_info(EVENTS_STREAM)).state.last_seq
        if self.applied_seq > last:
            # The log was wiped or replaced under an old read model: start over from it.
            log.warning("read model is at seq %d but the log ends at %d; rebuilding", self.applied_seq, last)
            await asyncio.to_thread(schema.reset, self.con)
            self.applied_seq = 0
            self._workers = {}
            self._schedules = {}
            self.domains, self.tokens = {}, {}
        if self.applied_seq:
            config = api.ConsumerConfig(
                deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=self.applied_seq + 1
            )
        else:
            config = api.ConsumerConfig(deliver_policy=api.DeliverPolicy.ALL)
        self._subs.append(
            await js.subscribe(
                "ev.>", stream=EVENTS_STREAM, cb=self._on_event, ordered_consumer=True, config=config,
                pending_msgs_limit=FOLLOW_PENDING_LIMIT, pending_bytes_limit=-1,
                idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S,
            )
        )  # fmt: skip
        with contextlib.suppress(Exception):
            self._subs.append(
                await js.subscribe(
                    f"{HEARTBEATS_PREFIX}.>", stream=HEARTBEATS_STREAM, cb=self._on_beat,
                    ordered_consumer=True, deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
                    idle_heartbeat=FOLLOW_IDLE_HEARTBEAT_S,
                )
            )  # fmt: skip
        self._task = asyncio.create_task(self._run(), name="projector")

    def _open(self) -> duckdb.DuckDBPyConnection:
        con = duckdb.connect(self.db_path)
        try:
            schema.ensure(con)
        except schema.SchemaMismatch as exc:
            log.warning("%s; rebuilding the read model from the log", exc)
            schema.reset(con)
        self.applied_seq = schema.checkpoint(con)
        self._workers = _load_workers(con)
        self._schedules = _load_schedules(con)
        self._set_domains(_load_domains(con))
        return con

    async def stop(self) -> None:
        if self.building is not None:
            await self.building.stop()
        for sub in self._subs:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()
        self._subs.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._con is not None:
            await asyncio.to_thread(self._apply_lock.acquire)
            try:
                self._con.close()
                self._con = None
            finally:
                self._apply_lock.release()

    def _set_domains(self, domains: dict[str, DomainState]) -> None:
        self.tokens = {t.id: (d.name, t) for d in domains.values() for t in d.tokens}
        self.domains = domains

    async def _on_event(self, msg: Msg) -> None:
        self._inbox.append(msg)
        self._wake.set()

    async def _on_beat(self, msg: Msg) -> None:
        try:
            beat = decode_heartbeat(msg.subject, msg.data)
        except DecodeError as exc:
            log.warning("bad heartbeat on %s: %s", msg.subject, exc)
            return
        self._beats[(beat.domain, beat.worker_id)] = beat
        self._wake.set()

    # ---- waiting on the read model ---------------------------------------------------

    async def wait_for(self, seq: int, timeout: float) -> bool:
        """True once every event up to `seq` is applied; False if that takes longer than `timeout`."""
        if self.applied_seq >= seq:
            return True
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        try:
            await asyncio.wait_for(asyncio.shield(fut), timeout)
            return True
        except TimeoutError:
            return self.applied_seq >= seq
        finally:
            self._waiters = [(s, f) for s, f in self._waiters if f is not fut]

    async def lag(self) -> int:
        assert self._js is not None
        last = (await self._js.stream_info(EVENTS_STREAM)).state.last_seq
        return max(0, int(last) - self.applied_seq)

    def _release_waiters(self) -> None:
        keep = []
        for seq, fut in self._waiters:
            if seq <= self.applied_seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((seq, fut))
        self._waiters = keep

    # ---- the apply loop --------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel racing its timeout.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(IDLE_WAIT_S):
                    await self._wake.wait()
            self._wake.clear()
            while self._inbox or self._beats:
                msgs, self._inbox = self._inbox[: self.batch_max], self._inbox[self.batch_max :]
                beats, self._beats = self._beats, {}
                raw = [(m.metadata.sequence.stream, m.subject, m.data) for m in msgs]
                try:
                    await asyncio.to_thread(self._apply, raw, list(beats.values()))
                except Exception:
                    log.exception("projection batch failed; retrying")
                    self._inbox = msgs + self._inbox
                    self._beats = beats | self._beats
                    await asyncio.sleep(RETRY_WAIT_S)
                    continue
                self._release_waiters()

    def _apply(self, raw: list[tuple[int, str, bytes]], beats: list[Heartbeat]) -> None:
        with self._apply_lock:
            if self._con is None:
                return
            self._apply_locked(raw, beats)

    def _apply_locked(self, raw: list[tuple[int, str, bytes]], beats: list[Heartbeat]) -> None:
        started = time.perf_counter()
        fresh = [r for r in raw if r[0] > self.applied_seq]
        con = self.con
        batch = fold_batch(
            fresh,
            self._jobs,
            self._workers,
            lambda keys: _load_jobs(con, keys),
            self._schedules,
            self.domains,
            lambda keys: _load_templates(con, keys),
        )
        write_batch(con, batch, [mapping.liveness_row(b) for b in beats])
        absorb(batch, self._jobs, self._workers, self._schedules)
        if batch.domains:
            self._set_domains(self.domains | {name: d for name, (d, _) in batch.domains.items()})
        self.undecodable += batch.undecodable
        if fresh:
            self.applied_seq = batch.last_seq
            self.batches += 1
            log.debug("applied %d events in %.1f ms", len(fresh), (time.perf_counter() - started) * 1000)


def absorb(
    batch: Batch,
    jobs: dict[Key, JobState],
    workers: dict[Key, WorkerState],
    schedules: dict[Key, ScheduleState],
) -> None:
    """Carry a folded batch's states into the in-memory ones the next fold starts from; finished
    jobs leave memory (a later event for one loads it back from the table)."""
    for key, (state, _) in batch.jobs.items():
        if state.terminal:
            jobs.pop(key, None)
        else:
            jobs[key] = state
    for key, (wstate, _) in batch.workers.items():
        workers[key] = wstate
    for key, (sstate, _) in batch.schedules.items():
        schedules[key] = sstate


def fold_batch(
    raw: list[tuple[int, str, bytes]],
    jobs: dict[Key, JobState],
    workers: dict[Key, WorkerState],
    load_jobs: Any,
    schedules: dict[Key, ScheduleState] | None = None,
    domains: dict[str, DomainState] | None = None,
    load_templates: Any = lambda keys: {},
) -> Batch:
    """Decode and fold a run of events into the rows they change; undecodable ones are skipped."""
    batch = Batch(last_seq=raw[-1][0] if raw else 0)
    decoded: list[tuple[int, str, Any, bytes]] = []
    append = decoded.append
    # Jobs whose first event here is not their creation may have earlier events in the table;
    # templates are few and change rarely: their earlier state comes from the table.
    first: dict[Key, bool] = {}
    template_keys: set[Key] = set()
    for seq, subject, data in raw:
        try:
            event = decode_event(subject, data)
        except DecodeError as exc:
            batch.undecodable += 1
            log.error("skipping undecodable event seq %d on %s: %s", seq, subject, exc)
            continue
        append((seq, subject, event, data))
        if isinstance(event, JobEvent):
            key = (event.domain, event.job_id)
            if key not in first:
                first[key] = isinstance(event, Submitted)
        elif isinstance(event, TemplateEvent):
            template_keys.add((event.domain, event.template))
    template_states: dict[Key, TemplateState | None] = (
        dict(load_templates(template_keys)) if template_keys else {}
    )
    missing = {k for k, created in first.items() if not created and k not in jobs}
    loaded: dict[Key, JobState] = load_jobs(missing)
    job_states: dict[Key, JobState | None] = {**loaded}
    batch.events.extend(decoded)
    changed = batch.jobs
    for seq, _, event, _ in decoded:
        if isinstance(event, JobEvent):
            key = (event.domain, event.job_id)
            before = job_states[key] if key in job_states else jobs.get(key)
            job_event: AnyJobEvent = event  # type: ignore[assignment]
            after = evolve(before, job_event)
            job_states[key] = after
            if after is not None and after is not before:
                changed[key] = (after, seq)
        elif isinstance(event, WorkerEvent):
            wkey = (event.domain, event.worker_id)
            wbefore = batch.workers[wkey][0] if wkey in batch.workers else workers.get(wkey)
            worker_event: AnyWorkerEvent = event  # type: ignore[assignment]
            wafter = evolve_worker(wbefore, worker_event)
            if wafter is not None:
                batch.workers[wkey] = (wafter, seq)
        elif isinstance(event, TemplateEvent):
            tkey = (event.domain, event.template)
            template_event: AnyTemplateEvent = event  # type: ignore[assignment]
            tafter = evolve_template(template_states.get(tkey), template_event)
            template_states[tkey] = tafter
            if tafter is not None:
                batch.templates[tkey] = (tafter, seq)
        elif isinstance(event, DomainEvent):
            dbefore = (
                batch.domains[event.domain][0]
                if event.domain in batch.domains
                else (domains or {}).get(event.domain)
            )
            domain_event: AnyDomainEvent = event  # type: ignore[assignment]
            dafter = evolve_domain(dbefore, domain_event)
            if dafter is not None:
                batch.domains[event.domain] = (dafter, seq)
        elif isinstance(event, ScheduleEvent):
            skey = (event.domain, event.schedule_id)
            sbefore = batch.schedules[skey][0] if skey in batch.schedules else (schedules or {}).get(skey)
            schedule_event: AnyScheduleEvent = event  # type: ignore[assignment]
            safter = evolve_schedule(sbefore, schedule_event)
            if safter is not None:
                batch.schedules[skey] = (safter, seq)
                run = mapping.schedule_run_row(seq, schedule_event)
                if run is not None:
                    batch.runs.append(run)
    return batch


@dataclass(frozen=True)
class Write:
    """One statement of a batch's transaction with its rows already in Arrow: building them holds
    the GIL, applying them is DuckDB's work alone, so a replay builds the next chunk's rows while
    DuckDB writes the last one's."""

    table: str
    rows: pa.Table
    delete_by: str | None = None  # key columns: first delete the table's rows with these keys
    insert: bool = True
    select: str = "*"


# The events table from EventRows: the subject's parts are split here, by DuckDB.
EVENTS_SELECT = (
    "seq, split_part(subject, '.', 2), split_part(subject, '.', 3), split_part(subject, '.', 4), "
    "split_part(subject, '.', 5), subject, \"at\", actor, data"
)


def prepare_writes(batch: Batch, liveness: list[dict[str, Any]]) -> list[Write]:
    """The statements that write `batch`, in order; a new table needs one more Write here."""
    out: list[Write] = []
    if batch.jobs:
        states = [s for s, _ in batch.jobs.values()]
        job_rows = [mapping.job_row(s, q) for s, q in batch.jobs.values()]
        out.append(Write("jobs", _columns(job_rows, schema.JOBS), delete_by="domain, id"))
        keys = pa.table({"domain": [s.domain for s in states], "job_id": [s.id for s in states]})
        for table in ("attempts", "runs"):
            out.append(Write(table, keys, delete_by="domain, job_id", insert=False))
        attempts = [row for s in states for row in mapping.attempt_rows(s)]
        if attempts:
            out.append(Write("attempts", _columns(attempts, schema.ATTEMPTS)))
            runs = [row for s in states for row in mapping.run_rows(s)]
            out.append(Write("runs", _columns(runs, schema.RUNS)))
    if batch.workers:
        rows = [mapping.worker_row(s, q) for s, q in batch.workers.values()]
        out.append(Write("workers", _arrow(rows, schema.WORKERS), delete_by="domain, id"))
    if batch.schedules:
        rows = [mapping.schedule_row(s, q) for s, q in batch.schedules.values()]
        out.append(Write("schedules", _arrow(rows, schema.SCHEDULES), delete_by="domain, id"))
    if batch.runs:
        out.append(Write("schedule_runs", _arrow(batch.runs, schema.SCHEDULE_RUNS)))
    if batch.templates:
        rows = [mapping.template_row(t, q) for t, q in batch.templates.values()]
        out.append(Write("templates", _arrow(rows, schema.TEMPLATES), delete_by="domain, name"))
    if batch.domains:
        rows = [mapping.domain_row(d, q) for d, q in batch.domains.values()]
        out.append(Write("domains", _arrow(rows, schema.DOMAINS), delete_by="name"))
    if batch.events:
        out.append(Write("events", batch.events.table(), select=EVENTS_SELECT))
    if liveness:
        out.append(Write("worker_liveness", _arrow(liveness, schema.LIVENESS), delete_by="domain, id"))
    return out


def apply_writes(con: duckdb.DuckDBPyConnection, writes: list[Write], last_seq: int) -> None:
    """One transaction: changed rows, appended events, and the checkpoint move together."""
    con.execute("BEGIN TRANSACTION")
    try:
        for w in writes:
            con.register("batch_rows", w.rows)
            try:
                if w.delete_by:
                    con.execute(
                        f"DELETE FROM {w.table} WHERE ({w.delete_by}) IN "
                        f"(SELECT DISTINCT {w.delete_by} FROM batch_rows)"
                    )
                if w.insert:
                    con.execute(f"INSERT INTO {w.table} SELECT {w.select} FROM batch_rows")
            finally:
                con.unregister("batch_rows")
        if last_seq:
            con.execute("UPDATE checkpoint SET seq = ? WHERE name = 'events'", [last_seq])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def write_batch(con: duckdb.DuckDBPyConnection, batch: Batch, liveness: list[dict[str, Any]]) -> None:
    """One transaction: changed rows, appended events, and the checkpoint move together."""
    apply_writes(con, prepare_writes(batch, liveness), batch.last_seq)
