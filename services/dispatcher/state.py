"""The dispatcher's view of the world, folded from the log: live jobs, workers, load, queues.

Concurrency limits (see limits.py) cost O(1) per event: `active` counts dispatched and
running jobs per limit key, following the same fold as everything else. A pending job
that a full limit keeps back is parked under that limit (a heap in priority + FIFO
order) instead of being looked at again on every round; each time a job counting
toward a limit leaves the active states, the first job parked under that limit goes
back to the ready queue, holding a "release" of that limit. If the released job is then
kept back by another limit, its release passes on to the next job parked under the
limit it came from, so a freed slot is never lost. A released job parked under the
domain limit keeps its releases instead: every job of the domain waits on that limit,
so passing them on would only shuffle jobs between queues.
"""

from __future__ import annotations

import heapq
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

from events.base import Event
from events.job import ACTIVE, JobEvent, JobState, JobStatus, evolve
from events.worker import (
    Heartbeat,
    Registered,
    StateChanged,
    WorkerEvent,
    WorkerState,
    WorkerStatus,
    evolve_worker,
)
from services.dispatcher.failover import Held, Run
from services.dispatcher.limits import DOMAIN, LimitKey, counted
from services.dispatcher.placement import WorkerView

Key = tuple[str, str]  # (domain, id)
QueueItem = tuple[int, int, str, str]  # (-priority, order, domain, id)


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
    registered_seq: int = 0
    # The worker's last event: what the dispatcher's next decision on it (offline, online) answers.
    last_event_id: str | None = None


@dataclass
class DispatchState:
    started_at: float = field(default_factory=time.monotonic)
    jobs: dict[Key, JobEntry] = field(default_factory=dict)
    workers: dict[Key, WorkerEntry] = field(default_factory=dict)
    load: Counter[Key] = field(default_factory=Counter)
    # The jobs each worker holds (dispatched or running), and since when its beats leave one out.
    assigned: dict[Key, set[str]] = field(default_factory=dict)
    missing_since: dict[Key, tuple[int, float]] = field(default_factory=dict)
    # Pending jobs move: fresh -> (held | ready | delayed) -> dispatched.
    fresh: set[Key] = field(default_factory=set)
    held: set[Key] = field(default_factory=set)
    ready: list[QueueItem] = field(default_factory=list)
    queued: set[Key] = field(default_factory=set)
    delayed: list[tuple[datetime, str, str]] = field(default_factory=list)
    # Concurrency limits: dispatched + running jobs per limit key; jobs parked under the
    # limit that keeps them back (stale heap entries are skipped: `parked_at` is the truth);
    # and the limits whose freed slot a released job holds.
    active: Counter[LimitKey] = field(default_factory=Counter)
    parked: dict[LimitKey, list[QueueItem]] = field(default_factory=dict)
    parked_at: dict[Key, LimitKey] = field(default_factory=dict)
    releases: dict[Key, list[LimitKey]] = field(default_factory=dict)
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
        was_active = before is not None and before.status in ACTIVE
        if before is not None and was_active and before.worker_id:
            self.load[(event.domain, before.worker_id)] -= 1
            self.assigned.get((event.domain, before.worker_id), set()).discard(event.job_id)
        if before is None or (before.status, before.attempt) != (after.status, after.attempt):
            # Dispatched -> running (a start that came late) restarts the grace from now.
            self.missing_since.pop(key, None)
        if after.status is not JobStatus.PENDING:
            self.parked_at.pop(key, None)
            releases = self.releases.pop(key, ())
            if after.terminal and not was_active:
                # Cancelled while holding a freed slot: hand the slot to the next in line.
                for limit in releases:
                    self.release(limit)
        if was_active and after.status not in ACTIVE:
            for limit in counted(after.spec, event.domain):
                self._uncount(limit)
                self.release(limit)
        elif not was_active and after.status in ACTIVE:
            for limit in counted(after.spec, event.domain):
                self.active[limit] += 1
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
            self.assigned.setdefault((event.domain, after.worker_id), set()).add(event.job_id)
        if after.status is JobStatus.PENDING and (before is None or before.status is not JobStatus.PENDING):
            self.fresh.add(key)

    def _uncount(self, limit: LimitKey) -> None:
        left = self.active[limit] - 1
        if left > 0:
            self.active[limit] = left
        else:
            del self.active[limit]

    def _apply_worker(self, seq: int, event: WorkerEvent) -> None:
        key = (event.domain, event.worker_id)
        entry = self.workers.get(key)
        if entry is not None and seq <= entry.seq:
            return
        after = evolve_worker(entry.state if entry else None, event)  # type: ignore[arg-type]
        if after is None:
            return
        if entry is None:
            entry = self.workers[key] = WorkerEntry(after, seq, time.monotonic())
        else:
            entry.state, entry.seq = after, seq
            if after.status is WorkerStatus.ACTIVE and not isinstance(event, StateChanged):
                entry.draining = False  # a fresh run or beats again; an operator's change is not
        entry.last_event_id = event.id
        if isinstance(event, Registered):
            entry.registered_seq = seq
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
        listed = set(hb.running)
        for job_id in self.assigned.get((hb.domain, hb.worker_id), ()):
            key = (hb.domain, job_id)
            job = self.jobs.get(key)
            if job is None:
                continue
            if job_id in listed:
                self.missing_since.pop(key, None)
            elif self.missing_since.get(key, (0, 0.0))[0] != job.state.attempt:
                self.missing_since[key] = (job.state.attempt, now)

    # ---- queries --------------------------------------------------------------------

    def is_live(self, entry: WorkerEntry, now: float, ttl_s: float) -> bool:
        """Takes new jobs: active, beating, not shutting down, not drained or disabled by an operator."""
        return self._up(entry, now, ttl_s) and entry.state.admin_state == "active"

    def _up(self, entry: WorkerEntry, now: float, ttl_s: float) -> bool:
        return (
            entry.state.status is WorkerStatus.ACTIVE
            and not entry.draining
            and now - entry.last_beat <= ttl_s
        )

    def live_views(self, now: float, ttl_s: float) -> dict[str, list[WorkerView]]:
        views: dict[str, list[WorkerView]] = {}
        for (domain, wid), entry in self.workers.items():
            if self.is_live(entry, now, ttl_s):
                views.setdefault(domain, []).append(self._view(domain, wid, entry))
        return views

    def withheld_views(self, now: float, ttl_s: float) -> dict[str, list[tuple[WorkerView, str]]]:
        """Workers that are up but that an operator drained or disabled, with that state: named
        in a held job's reason, so nobody wonders why the job waits beside a live worker."""
        views: dict[str, list[tuple[WorkerView, str]]] = {}
        for (domain, wid), entry in self.workers.items():
            if entry.state.admin_state != "active" and self._up(entry, now, ttl_s):
                views.setdefault(domain, []).append((self._view(domain, wid, entry), entry.state.admin_state))
        return views

    def _view(self, domain: str, wid: str, entry: WorkerEntry) -> WorkerView:
        s = entry.state
        return WorkerView(
            id=wid,
            tags=frozenset(s.tags),
            allowed_users=frozenset(s.allowed_users),
            executors=frozenset(s.executors),
            max_concurrency=s.max_concurrency,
            load=self.load[(domain, wid)],
        )

    def holdings(self) -> list[Held]:
        """Every attempt some active worker holds, as the failover planner sees it."""
        out = []
        for (domain, worker_id), job_ids in self.assigned.items():
            worker = self.workers.get((domain, worker_id))
            if worker is None or worker.state.status is not WorkerStatus.ACTIVE:
                continue
            for job_id in job_ids:
                job = self.jobs.get((domain, job_id))
                if job is None or job.state.status not in ACTIVE:
                    continue
                s = job.state
                running = s.status is JobStatus.RUNNING
                out.append(Held(domain, job_id, worker_id, s.attempt, running, s.incarnation, job.seq))
        return out

    def runs(self) -> dict[Key, Run]:
        return {
            key: Run(w.state.incarnation, w.registered_seq)
            for key, w in self.workers.items()
            if w.state.status is WorkerStatus.ACTIVE
        }

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
        self._push_ready(key, entry)

    def _push_ready(self, key: Key, entry: JobEntry) -> None:
        if key not in self.queued:
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

    # ---- concurrency limits --------------------------------------------------------

    def park(self, key: Key, entry: JobEntry, limit: LimitKey) -> None:
        """Keep a pending job aside until a job counting toward `limit` stops being active."""
        self.parked_at[key] = limit
        heapq.heappush(
            self.parked.setdefault(limit, []), (-entry.state.spec.priority, entry.order, key[0], key[1])
        )
        releases = [r for r in self.releases.pop(key, ()) if r != limit]  # `limit` is full again
        if limit[0] == DOMAIN:
            if releases:
                self.releases[key] = releases
            return
        for other in releases:
            self.release(other)

    def release(self, limit: LimitKey) -> None:
        """A slot of `limit` is free: its first parked job goes back to the ready queue."""
        heap = self.parked.get(limit)
        if heap is None:
            return
        while heap:
            _, _, domain, job_id = heapq.heappop(heap)
            key = (domain, job_id)
            if self.parked_at.get(key) != limit:
                continue  # stale: released, dispatched or ended since it was parked here
            del self.parked_at[key]
            entry = self.jobs.get(key)
            if entry is None or entry.state.status is not JobStatus.PENDING:
                continue
            self.releases.setdefault(key, []).append(limit)
            self._push_ready(key, entry)
            break
        if not heap:
            del self.parked[limit]

    def forfeit(self, key: Key) -> None:
        """The job will not use the slots it was released into (held, or its dispatch refused)."""
        for limit in self.releases.pop(key, ()):
            self.release(limit)

    def parked_count(self) -> int:
        return len(self.parked_at)
