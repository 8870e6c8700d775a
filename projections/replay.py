"""Bulk replay: the whole log (or a prefix of it) into a fresh DuckDB read model, fast.

The live projector applies what arrives in batches of up to 20,000 events; a replay knows the
whole log is there, so it reads it with the audit's bare-socket reader, folds large chunks with
the projector's own pure `fold_batch` (the same code, so the same rows), and writes each chunk
in one transaction with its checkpoint: `prepare_writes` builds the chunk's Arrow rows in the
fold's thread, `apply_writes` runs them on a writer thread while the next chunk folds (DuckDB's
part holds no GIL; building rows there too made the threads fight over it). Memory holds one
window being read, one chunk being folded and one being written, plus the states of unfinished
jobs, workers, schedules and domains, as the live projector does.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import msgspec
from nats.aio.client import Client as NATS

from events.domain import DomainState
from events.job import JobState
from events.schedule import ScheduleState
from events.worker import WorkerState
from projections import schema
from projections.projector import (
    Batch,
    Key,
    Write,
    _load_domains,
    _load_jobs,
    _load_schedules,
    _load_templates,
    _load_workers,
    absorb,
    apply_writes,
    fold_batch,
    prepare_writes,
)
from services.audit.reader import Raw, bounds, read_stream

CHUNK_EVENTS = 50_000
READ_AHEAD_WINDOWS = 1
DUCKDB_MEMORY_LIMIT = "1GB"


@dataclass
class Progress:
    """How far a replay is; `rate` and `eta_s` come from the monotonic clock, never from the fold."""

    target_seq: int
    seq: int = 0
    events: int = 0
    undecodable: int = 0
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def rate(self) -> float:
        elapsed = self.elapsed_s
        return self.events / elapsed if elapsed > 0 else 0.0

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if self.finished is not None:
            return 0.0
        return max(0, self.target_seq - self.seq) / rate if rate > 0 else None

    def describe(self) -> str:
        eta = self.eta_s
        eta_text = "?" if eta is None else f"{eta:.0f}s"
        return (
            f"seq {self.seq:,} of {self.target_seq:,}, {self.events:,} events, "
            f"{self.rate:,.0f} events/s, ETA {eta_text}"
        )


class _At(msgspec.Struct):
    at: datetime


_at_decoder = msgspec.json.Decoder(_At)


def _cut_at(raw: list[Raw], until: datetime) -> tuple[list[Raw], bool]:
    """The events up to the first one stamped after `until`, and whether that one was found."""
    for i, (_, _, data) in enumerate(raw):
        try:
            at = _at_decoder.decode(data).at
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue  # undecodable: the fold skips it anyway
        if at > until:
            return raw[:i], True
    return raw, False


class _Model:
    """The in-memory states a fold starts from, and the file the chunks go to."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self.con = con
        self.jobs: dict[Key, JobState] = {}
        self.workers: dict[Key, WorkerState] = _load_workers(con)
        self.schedules: dict[Key, ScheduleState] = _load_schedules(con)
        self.domains: dict[str, DomainState] = _load_domains(con)
        self.written = threading.Event()
        self.written.set()
        self.error: BaseException | None = None

    def _read(self, fn: Callable[[duckdb.DuckDBPyConnection], object]) -> object:
        # A load reads what earlier chunks wrote: wait until the writer has committed them.
        self.written.wait()
        cur = self.con.cursor()
        try:
            return fn(cur)
        finally:
            cur.close()

    def fold(self, raw: list[Raw]) -> tuple[Batch, list[Write]]:
        """Fold a chunk and build its rows, both holding the GIL, so `write` is DuckDB's alone."""
        batch = fold_batch(
            raw,
            self.jobs,
            self.workers,
            lambda keys: self._read(lambda cur: _load_jobs(cur, keys)),
            self.schedules,
            self.domains,
            lambda keys: self._read(lambda cur: _load_templates(cur, keys)),
        )
        absorb(batch, self.jobs, self.workers, self.schedules)
        if batch.domains:
            self.domains = self.domains | {name: d for name, (d, _) in batch.domains.items()}
        return batch, prepare_writes(batch, [])

    def write(self, batch: Batch, writes: list[Write]) -> None:
        try:
            apply_writes(self.con, writes, batch.last_seq)
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.written.set()


async def replay(
    nc: NATS,
    db_path: Path | str,
    *,
    until_seq: int | None = None,
    until: datetime | None = None,
    progress: Progress | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    chunk_events: int = CHUNK_EVENTS,
    pause_gc: bool = True,
) -> Progress:
    """Build `db_path` (a new file, or one a replay left at a checkpoint) from the log through
    `until_seq`, or up to the first event stamped after `until`; returns where it stopped.
    `pause_gc=False` where other work shares the process (the API building beside its model)."""
    span = await bounds(nc)
    target = span.last_seq if until_seq is None else min(until_seq, span.last_seq)
    con = await asyncio.to_thread(_open, str(db_path))
    model = _Model(con)
    start = max(schema.checkpoint(con) + 1, span.first_seq, 1)
    prog = progress or Progress(target_seq=target)
    prog.target_seq, prog.seq, prog.finished = target, start - 1, None
    queue: asyncio.Queue[list[Raw] | Exception | None] = asyncio.Queue(READ_AHEAD_WINDOWS)

    async def read() -> None:
        # A window at a time, each read whole by a consumer of its own: while the fold lags, no
        # consumer is open with deliveries waiting (the server drops a reader that stops
        # reading its socket for 10 s), and what is read ahead stays within READ_AHEAD_WINDOWS.
        # The end (None) or the error is handed on in order; a cancel hands on nothing.
        try:
            lo = start
            while lo <= target:
                hi = min(target, lo + chunk_events - 1)
                window: list[Raw] = []
                async for got in read_stream(nc, lo, hi):
                    window.extend(got)
                await queue.put(window)
                lo = hi + 1
        except Exception as exc:
            await queue.put(exc)
            return
        await queue.put(None)

    reader = asyncio.create_task(read(), name="replay-read")
    writing: asyncio.Future[None] | None = None
    collecting = pause_gc and gc.isenabled()
    if collecting:
        # The fold makes millions of small objects, none cyclic: the collector's passes over
        # them cost more than half the fold's time and free nothing.
        gc.disable()
    try:
        ended = False
        pending: list[Raw] = []
        while pending or not ended:
            while len(pending) < chunk_events and not ended:
                got = await queue.get()
                if isinstance(got, Exception):
                    raise got
                if got is None:
                    ended = True
                else:
                    pending.extend(got)
            chunk, pending = pending[:chunk_events], pending[chunk_events:]
            if until is not None and chunk:
                chunk, past = _cut_at(chunk, until)
                if past:
                    ended, pending = True, []
            if not chunk:
                break
            batch, writes = await asyncio.to_thread(model.fold, chunk)
            if writing is not None:
                await writing
            model.written.clear()
            writing = asyncio.ensure_future(asyncio.to_thread(model.write, batch, writes))
            writing.add_done_callback(functools.partial(_advance, prog, batch, len(chunk), on_progress))
        if writing is not None:
            await writing
            writing = None
    finally:
        if collecting:
            gc.enable()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reader
        if writing is not None:
            with contextlib.suppress(Exception):
                await writing
        await asyncio.to_thread(_close, con)
    prog.finished = time.monotonic()
    if on_progress is not None:
        on_progress(prog)
    return prog


def _advance(
    prog: Progress, batch: Batch, events: int, on_progress: Callable[[Progress], None] | None, _: object
) -> None:
    prog.seq = max(prog.seq, batch.last_seq)
    prog.events += events
    prog.undecodable += batch.undecodable
    if on_progress is not None:
        on_progress(prog)


def _open(path: str) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(path)
    try:
        # DuckDB caches up to 80% of RAM by default; a replay only appends, so a bounded cache
        # keeps its memory the same whatever the log's length.
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY_LIMIT}'")
        schema.ensure(con)
    except BaseException:
        con.close()
        raise
    return con


def _close(con: duckdb.DuckDBPyConnection) -> None:
    # Fold the WAL into the file, so the file alone is the model and may be renamed.
    with contextlib.suppress(duckdb.Error):
        con.execute("CHECKPOINT")
    con.close()


def discard(path: Path) -> None:
    """Remove a database file and its WAL."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


def swap_in(built: Path, target: Path) -> None:
    """Move a finished replay over `target` (its WAL is already folded in by `replay`)."""
    target.with_name(target.name + ".wal").unlink(missing_ok=True)
    os.replace(built, target)
