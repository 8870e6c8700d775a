"""The dispatcher's view of the world, folded from the log: live jobs, workers, load, queues."""

from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from events.base import Event
from events.job import ACTIVE, JobEvent, JobState, JobStatus, evolve
from events.worker import Heartbeat, WorkerEvent, WorkerState, WorkerStatus, evolve_worker
from services.dispatcher.placement import WorkerView

Key = tuple[str, str]  # (domain, id)


@dataclass
class JobEntry:
    state: JobState
    seq: int
    order: int  # sequence of the submission: FIFO within a priority


@dataclass
class WorkerEntry:
    state: WorkerState
    seq: int
    last_beat: float
    draining: bool = False


@dataclass
class DispatchState:
    started_at: float = field(default_factory=time.monotonic)
    jobs: dict[Key, JobEntry] = field(default_factory=dict)
    workers: dict[Key, WorkerEntry] = field(default_factory=dict)
    load: Counter[Key] = field(default_factory=Counter)
    # Pending jobs move: fresh -> (held | ready | delayed) -> dispatched.
    fresh: set[Key] = field(default_factory=set)
    held: set[Key] = field(default_factory=set)
    ready: list[tuple[int, int, str, str]] = field(default_factory=list)
    queued: set[Key] = field(default_factory=set)
    delayed: list[tuple[datetime, str, str]] = field(default_factory=list)
    # Workers that stopped with jobs still assigned, whose jobs must be taken back.
    orphaned: set[Key] = field(default_factory=set)
    fleet_changed: bool = False

    # ---- folding --------------------------------------------------------------------

    def apply(self, seq: int, event: Event) -> None:
        if isinstance(event, JobEvent):
            self._apply_job(seq, event)
        elif isinstance(event, WorkerEvent):
            self._apply_worker(seq, event)

    def _apply_job(self, seq: int, event: JobEvent) -> None:
        key = (event.domain, event.job_id)
        entry = self.jobs.get(key)
        if entry is not None and seq <= entry.seq:
            return  # applied already (our own append, seen again on the stream)
        before = entry.state if entry else None
        after = evolve(before, event)  # type: ignore[arg-type]
        if after is None:
            return
        if before is not None and before.status in ACTIVE and before.worker_id:
            self.load[(event.domain, before.worker_id)] -= 1
        if after.terminal:
            self.jobs.pop(key, None)
            self.fresh.discard(key)
            self.held.discard(key)
            return
        if entry is None:
            entry = JobEntry(after, seq, seq)
            self.jobs[key] = entry
        else:
            entry.state, entry.seq = after, seq
        if after.status in ACTIVE and after.worker_id:
            self.load[(event.domain, after.worker_id)] += 1
        if after.status is JobStatus.PENDING and (before is None or before.status is not JobStatus.PENDING):
            self.fresh.add(key)

    def _apply_worker(self, seq: int, event: WorkerEvent) -> None:
        key = (event.domain, event.worker_id)
        entry = self.workers.get(key)
        if entry is not None and seq <= entry.seq:
            return
        after = evolve_worker(entry.state if entry else None, event)  # type: ignore[arg-type]
        if after is None:
            return
        if entry is None:
            self.workers[key] = WorkerEntry(after, seq, time.monotonic())
        else:
            entry.state, entry.seq = after, seq
            if after.status is WorkerStatus.ACTIVE:
                entry.draining = False
        if after.status is not WorkerStatus.ACTIVE and self.load[key] > 0:
            self.orphaned.add(key)
        self.fleet_changed = True

    def beat(self, hb: Heartbeat, now: float) -> None:
        entry = self.workers.get((hb.domain, hb.worker_id))
        if entry is None:
            return
        if entry.draining != hb.draining:
            self.fleet_changed = True
        entry.last_beat = now
        entry.draining = hb.draining

    # ---- queries --------------------------------------------------------------------

    def is_live(self, entry: WorkerEntry, now: float, ttl_s: float) -> bool:
        return (
            entry.state.status is WorkerStatus.ACTIVE
            and not entry.draining
            and now - entry.last_beat <= ttl_s
        )

    def live_views(self, now: float, ttl_s: float) -> dict[str, list[WorkerView]]:
        views: dict[str, list[WorkerView]] = {}
        for (domain, wid), entry in self.workers.items():
            if not self.is_live(entry, now, ttl_s):
                continue
            s = entry.state
            views.setdefault(domain, []).append(
                WorkerView(
                    id=wid,
                    tags=frozenset(s.tags),
                    allowed_users=frozenset(s.allowed_users),
                    executors=frozenset(s.executors),
                    max_concurrency=s.max_concurrency,
                    load=self.load[(domain, wid)],
                )
            )
        return views

    def jobs_on(self, domain: str, worker_id: str) -> list[JobEntry]:
        return [
            e
            for e in self.jobs.values()
            if e.state.domain == domain and e.state.worker_id == worker_id and e.state.status in ACTIVE
        ]

    # ---- queues ---------------------------------------------------------------------

    def enqueue(self, key: Key, now: datetime) -> None:
        entry = self.jobs.get(key)
        if entry is None or entry.state.status is not JobStatus.PENDING or key in self.queued:
            return
        not_before = entry.state.not_before
        if not_before is not None and not_before > now:
            heapq.heappush(self.delayed, (not_before, key[0], key[1]))
            return
        self.queued.add(key)
        heapq.heappush(self.ready, (-entry.state.spec.priority, entry.order, key[0], key[1]))

    def release_due(self, now: datetime) -> None:
        while self.delayed and self.delayed[0][0] <= now:
            _, domain, job_id = heapq.heappop(self.delayed)
            self.enqueue((domain, job_id), now)

    def pop_ready(self) -> JobEntry | None:
        while self.ready:
            _, _, domain, job_id = heapq.heappop(self.ready)
            key = (domain, job_id)
            self.queued.discard(key)
            entry = self.jobs.get(key)
            if entry is not None and entry.state.status is JobStatus.PENDING:
                return entry
        return None

    def next_due(self) -> datetime | None:
        return self.delayed[0][0] if self.delayed else None
