"""The scheduler's view, folded from the log: schedules, their unfinished runs, and when to look again."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from datetime import datetime

from events.base import Event
from events.job import TERMINAL_EVENTS, JobEvent, Submitted
from events.schedule import AnyScheduleEvent, ScheduleEvent, ScheduleState, evolve_schedule

Key = tuple[str, str]  # (domain, id)


@dataclass
class SchedulerState:
    schedules: dict[Key, tuple[ScheduleState, int]] = field(default_factory=dict)
    # Unfinished jobs of each schedule, oldest first: the "previous run" of overlap policies.
    active: dict[Key, list[str]] = field(default_factory=dict)
    owner: dict[Key, Key] = field(default_factory=dict)  # (domain, job id) -> schedule key
    dirty: set[Key] = field(default_factory=set)
    # The id of each schedule's last event: the causation of the next record the scheduler plans.
    last_event: dict[Key, str] = field(default_factory=dict)
    _timers: list[tuple[datetime, str, str]] = field(default_factory=list)
    _wake: dict[Key, datetime] = field(default_factory=dict)

    def apply(self, seq: int, event: Event) -> None:
        if isinstance(event, ScheduleEvent):
            key = (event.domain, event.schedule_id)
            known = self.schedules.get(key)
            if known is not None and seq <= known[1]:
                return  # our own append, seen again on the stream
            sched_event: AnyScheduleEvent = event  # type: ignore[assignment]
            after = evolve_schedule(known[0] if known else None, sched_event)
            if after is not None:
                self.schedules[key] = (after, seq)
                self.last_event[key] = event.id
                self.dirty.add(key)
        elif isinstance(event, Submitted) and event.schedule_id:
            key = (event.domain, event.schedule_id)
            runs = self.active.setdefault(key, [])
            if event.job_id not in runs:
                runs.append(event.job_id)
            self.owner[(event.domain, event.job_id)] = key
        elif isinstance(event, TERMINAL_EVENTS):
            job: JobEvent = event
            sched = self.owner.pop((job.domain, job.job_id), None)
            if sched is not None:
                runs = self.active.get(sched, [])
                if job.job_id in runs:
                    runs.remove(job.job_id)
                self.dirty.add(sched)

    def seen(self, subject: str, seq: int) -> bool:
        """True for an event already folded in (our own appends come back on the stream):
        decided from the subject alone, so it need not be decoded."""
        parts = subject.split(".")
        if len(parts) != 5:
            return False
        _, domain, aggregate, agg_id, kind = parts
        if aggregate == "schedule":
            known = self.schedules.get((domain, agg_id))
            return known is not None and seq <= known[1]
        return aggregate == "job" and kind == "submitted" and (domain, agg_id) in self.owner

    def runs_of(self, key: Key) -> list[str]:
        return list(self.active.get(key, ()))

    def wake_at(self, key: Key, at: datetime | None) -> None:
        if at is None:
            self._wake.pop(key, None)
            return
        if self._wake.get(key) == at:
            return
        self._wake[key] = at
        heapq.heappush(self._timers, (at, key[0], key[1]))

    def next_timer(self) -> datetime | None:
        while self._timers:
            at, domain, sid = self._timers[0]
            if self._wake.get((domain, sid)) == at:
                return at
            heapq.heappop(self._timers)  # superseded
        return None

    def due(self, now: datetime) -> set[Key]:
        """Schedules whose timer came, plus those whose state changed, to plan now."""
        keys, self.dirty = self.dirty, set()
        while self._timers and self._timers[0][0] <= now:
            at, domain, sid = heapq.heappop(self._timers)
            if self._wake.get((domain, sid)) == at:
                del self._wake[(domain, sid)]
                keys.add((domain, sid))
        return keys
